"""Pure decisions: which status writes make ``public.pipelines`` equal to Dagster's run records.

Dagster is the truth, the row is its copy. The Dagster shell (sensors, ``cdc-assets reconcile``)
turns run records into :class:`RunFact` values and rows into :class:`RowFact` values, asks this
module what to write, and hands each :class:`Write` to the repository, whose guarded transitions
make a duplicate or late write harmless. Keeping the rules here (stdlib + domain only) lets them be
tested without a Dagster instance or a database.
"""

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from cdc_assets.domain import CdcStatus, FullLoadStatus, Phase, Writer
from cdc_assets.status.machine import Status

RUN_RECORD_MISSING = "run record missing: Dagster no longer has the run this row points to"


class RunState(enum.StrEnum):
    """Dagster's run statuses by name (``DagsterRunStatus.value``), without importing dagster."""

    NOT_STARTED = "NOT_STARTED"
    QUEUED = "QUEUED"
    STARTING = "STARTING"
    STARTED = "STARTED"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    CANCELING = "CANCELING"
    CANCELED = "CANCELED"
    MANAGED = "MANAGED"

    @property
    def is_finished(self) -> bool:
        """Dagster will not change this run's status any more."""
        return self in (RunState.SUCCESS, RunState.FAILURE, RunState.CANCELED)

    @property
    def is_active(self) -> bool:
        """Queued or running: another launch for the pipeline must wait."""
        return self in (
            RunState.NOT_STARTED,
            RunState.QUEUED,
            RunState.STARTING,
            RunState.STARTED,
            RunState.CANCELING,
        )


@dataclass(frozen=True, slots=True)
class RunFact:
    """What the status rules need to know about one Dagster run."""

    run_id: str
    pipeline: str
    phase: Phase
    state: RunState
    created_at: datetime
    lock_conflict: bool = False
    error: str | None = None
    ended_at: datetime | None = None
    stream: bool = False
    """A CDC stream run (``cdc/stream=true``): STARTED is ACTIVE, its end STOPPED or FAILED."""


@dataclass(frozen=True, slots=True)
class PhaseFact:
    """One phase of a row as the guard columns describe it."""

    status: str
    run_id: str | None
    run_created_at: datetime | None
    authority: Writer | None


@dataclass(frozen=True, slots=True)
class RowFact:
    """A ``public.pipelines`` row reduced to what reconciling it needs."""

    name: str
    full_load: PhaseFact
    cdc: PhaseFact
    updated_at: datetime
    created_at: datetime | None = None

    def phase(self, phase: Phase) -> PhaseFact:
        """The guard columns of ``phase``."""
        return self.full_load if phase is Phase.FULL_LOAD else self.cdc


@dataclass(frozen=True, slots=True)
class Write:
    """One guarded transition to ask the repository for, passed as it is from writer to row.

    ``rows`` is a completed full load's row count (``None`` otherwise).
    """

    pipeline: str
    phase: Phase
    status: Status
    run_id: str
    run_created_at: datetime
    error: str | None = None
    message: str | None = None
    rows: int | None = None
    stream: bool = False  # the run is a CDC stream run (status ranks of machine.rank)


def full_load_status_for(state: RunState) -> FullLoadStatus | None:
    """The synchronization invariant's table; ``None`` while Dagster has not decided yet."""
    if state is RunState.STARTED:
        return FullLoadStatus.IN_PROGRESS
    if state is RunState.SUCCESS:
        return FullLoadStatus.COMPLETED
    if state in (RunState.FAILURE, RunState.CANCELED):
        return FullLoadStatus.FAILED
    return None


def cdc_status_for(state: RunState, *, stream: bool = False) -> CdcStatus | None:
    """A catch-up run has no in-progress status: while it runs ``cdc_status`` stays as it was.

    A stream run is ``ACTIVE`` while STARTED; it ends ``STOPPED`` when it stopped itself
    (disable, removal, maximum age) or was canceled, ``FAILED`` when it failed.
    """
    if stream:
        return {
            RunState.STARTED: CdcStatus.ACTIVE,
            RunState.SUCCESS: CdcStatus.STOPPED,
            RunState.CANCELED: CdcStatus.STOPPED,
            RunState.FAILURE: CdcStatus.FAILED,
        }.get(state)
    if state is RunState.SUCCESS:
        return CdcStatus.ACTIVE
    if state in (RunState.FAILURE, RunState.CANCELED):
        return CdcStatus.FAILED
    return None


def status_for(phase: Phase, state: RunState, *, stream: bool = False) -> Status | None:
    """The row status that mirrors ``state`` for ``phase`` (``stream``: a CDC stream run)."""
    if phase is Phase.FULL_LOAD:
        return full_load_status_for(state)
    return cdc_status_for(state, stream=stream)


def running_status(phase: Phase, *, stream: bool = False) -> Status | None:
    """The status a phase's op writes when it starts: ``IN_PROGRESS``; a stream ``ACTIVE``."""
    return status_for(phase, RunState.STARTED, stream=stream)


def step_status(phase: Phase, *, success: bool, stream: bool = False) -> Status:
    """The status a finished step reports for ``phase`` (the hooks' map).

    The same table as a finished run's (:func:`status_for`), so a hook and the run-status
    sensors can never map one outcome to two statuses.
    """
    status = status_for(phase, RunState.SUCCESS if success else RunState.FAILURE, stream=stream)
    assert status is not None  # both finished states map for both phases
    return status


def canceled_message(run: RunFact) -> str:
    """``last_error`` of a canceled run: says "canceled", and when, so an operator can find it."""
    when = f" at {run.ended_at.isoformat(timespec='seconds')}" if run.ended_at else ""
    return f"canceled: run {run.run_id} was canceled{when}"


def write_for_run(run: RunFact, *, default_error: str | None = None) -> Write | None:
    """The write a run-status event of ``run`` asks for, or ``None`` (not decided, lock loser).

    A run that lost the pipeline lock never touched the row and must not: it is not the
    pipeline's run, only a duplicate launch.
    """
    if run.lock_conflict:
        return None
    status = status_for(run.phase, run.state, stream=run.stream)
    if status is None:
        return None
    error = None
    if run.state is RunState.CANCELED and not run.stream:
        error = canceled_message(run)
    elif run.state is RunState.FAILURE:
        error = run.error or default_error or f"run {run.run_id} failed"
    return Write(
        pipeline=run.pipeline,
        phase=run.phase,
        status=status,
        run_id=run.run_id,
        run_created_at=run.created_at,
        error=error,
        message=f"Dagster run {run.state.value}",
        stream=run.stream,
    )


def stops_cdc(*, enabled: bool, status: CdcStatus, run_active: bool) -> bool:
    """True when a pipeline's CDC must be put in ``STOPPED``: disabled, idle, ACTIVE or FAILED.

    ``pipeline disable`` writes STOPPED itself; a row disabled by SQL has no such writer, so the
    CDC sensor applies this rule. It waits for no run to be going, so a batch in flight ends
    first, and the stop's fence keeps any run created before it from changing the row after.
    """
    return not enabled and status in (CdcStatus.ACTIVE, CdcStatus.FAILED) and not run_active


def latest_run(runs: Iterable[RunFact], phase: Phase) -> RunFact | None:
    """The pipeline's current run of ``phase``: newest by creation, lock losers ignored."""
    best: RunFact | None = None
    for run in runs:
        if run.phase is not phase or run.lock_conflict:
            continue
        if best is None or run.created_at > best.created_at:
            best = run
    return best


def decide(row: RowFact, runs: Sequence[RunFact]) -> list[Write]:
    """The writes that make ``row`` mirror Dagster's run records (empty when it already does).

    ``runs`` are the pipeline's recent runs plus the run each phase of the row points to, if
    Dagster still has it. Rules:

    * the latest run of a phase (by creation) decides that phase once Dagster has a status for it
      that maps to a row status (a queued run decides nothing yet);
    * a row still ``NOT_STARTED`` ignores runs created before the row (a removed namesake's runs;
      runs from before a reset are fenced by the reset's ``run_created_at``). Its later changes
      (an authority take-over by the full load's sensor, enable/disable) must not hide its own
      runs; rows without ``created_at`` fall back to ``updated_at``;
    * a row equal to the mapping is rewritten only to let the reconciler take over authority for a
      finished run (so an orphaned hook can never change it afterwards);
    * a row ``IN_PROGRESS`` whose run Dagster no longer has becomes ``FAILED`` ("run record
      missing"): nothing else would ever end it.
    """
    writes: list[Write] = []
    by_id = {r.run_id: r for r in runs}
    for phase in (Phase.FULL_LOAD, Phase.CDC):
        fact = row.phase(phase)
        candidates = [r for r in runs if r.pipeline == row.name]
        if fact.status == FullLoadStatus.NOT_STARTED:
            since = row.created_at if row.created_at is not None else row.updated_at
            candidates = [r for r in candidates if r.created_at > since]
        latest = latest_run(candidates, phase)
        newer = latest is not None and (
            fact.run_created_at is None or latest.created_at >= fact.run_created_at
        )
        if latest is not None and newer:
            write = write_for_run(latest)
            if write is not None and _differs(fact, write, latest):
                writes.append(_as_reconciled(write))
            continue
        if (
            phase is Phase.FULL_LOAD
            and fact.status == FullLoadStatus.IN_PROGRESS
            and fact.run_id is not None
            and fact.run_id not in by_id
            and fact.run_created_at is not None
        ):
            writes.append(
                Write(
                    pipeline=row.name,
                    phase=phase,
                    status=FullLoadStatus.FAILED,
                    run_id=fact.run_id,
                    run_created_at=fact.run_created_at,
                    error=RUN_RECORD_MISSING,
                    message="reconciler: run record missing",
                )
            )
    return writes


def _differs(fact: PhaseFact, write: Write, run: RunFact) -> bool:
    if fact.run_id != write.run_id or fact.status != write.status:
        return True
    return run.state.is_finished and not (fact.authority and fact.authority.is_authoritative)


def _as_reconciled(write: Write) -> Write:
    return replace(write, message=f"reconciler: {write.message}" if write.message else "reconciler")
