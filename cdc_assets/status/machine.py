"""Pure transition rules for one phase of a pipeline row (docs/internals.md, "Transition rules").

Ops, hooks, run-status sensors and the reconciler may all report on the same run, in any order,
more than once. The repository asks :func:`decide` whether a proposed write may change the row;
keeping the rule here, free of I/O, lets it be tested exhaustively and keeps the repository thin.

Statuses are ranked per run: ``NOT_STARTED`` (0) < running (1: ``IN_PROGRESS``) < terminal (2:
``COMPLETED``, ``FAILED``; for CDC ``ACTIVE``, ``FAILED``, ``STOPPED``). CDC has no running
status: a batch that runs leaves the row alone and ``ACTIVE`` means "the last batch succeeded", an
outcome like ``COMPLETED``. Within one run the rank never goes down: a late STARTED after SUCCESS
changes nothing.

After a reset a phase has no run but keeps the reset time in ``run_created_at`` as a fence, so a
late event of a run launched before the reset cannot undo it.

A newer run that reports the status the row already has (the next good CDC batch after a good
one, a retried batch failing again) is :attr:`Outcome.FOLLOW`: the row moves to that run (run
columns, ``last_run_id``, ``last_error``) but no event is written, because ``pipeline_events``
holds status changes only; otherwise every CDC batch would add an ``ACTIVE -> ACTIVE`` row.

One reading of rule 3 made explicit: an op/hook may move a run *forward* from a running status that
a sensor wrote (STARTED, then the op's own COMPLETED: the fastest path); what it may never do is
replace an authoritative *terminal* status of that run.
"""

import enum
from dataclasses import dataclass
from datetime import datetime

from cdc_assets.domain import CdcStatus, FullLoadStatus, Writer

Status = FullLoadStatus | CdcStatus

_RANK: dict[Status, int] = {
    FullLoadStatus.NOT_STARTED: 0,
    FullLoadStatus.IN_PROGRESS: 1,
    FullLoadStatus.COMPLETED: 2,
    FullLoadStatus.FAILED: 2,
    CdcStatus.NOT_STARTED: 0,
    CdcStatus.ACTIVE: 2,
    CdcStatus.FAILED: 2,
    CdcStatus.STOPPED: 2,
}


def rank(status: Status, *, stream: bool = False) -> int:
    """0 for never started, 1 while a run is going, 2 for a run's outcome.

    For a CDC stream run (one run that lives for hours), ``ACTIVE`` is its running status
    (rank 1): ``STOPPED`` or ``FAILED`` of the same run come after it, and a late STARTED cannot
    undo them. A catch-up run's ``ACTIVE`` is its outcome, as a batch's was.
    """
    if stream and status is CdcStatus.ACTIVE:
        return 1
    return _RANK[status]


def is_terminal(status: Status) -> bool:
    """True for statuses that are a run's outcome (everything but NOT_STARTED and IN_PROGRESS)."""
    return rank(status) == 2


class Outcome(enum.StrEnum):
    """What the repository does with a proposed write."""

    CHANGE = "change"
    """Write the new status (and an event)."""
    FOLLOW = "follow"
    """A newer run with the same status: move the run columns, write no event."""
    TAKE_AUTHORITY = "take_authority"
    """Same status; only ``*_authority`` moves to the authoritative writer (no event)."""
    IGNORE = "ignore"
    """Change nothing."""


@dataclass(frozen=True, slots=True)
class PhaseState:
    """The row's current view of one phase: status and the run (and writer) that set it."""

    status: Status
    run_id: str | None = None
    run_created_at: datetime | None = None
    authority: Writer | None = None


@dataclass(frozen=True, slots=True)
class ProposedWrite:
    """A writer's claim: run ``run_id`` (created at ``run_created_at``) puts the phase in ``to``."""

    to: Status
    run_id: str
    run_created_at: datetime
    writer: Writer
    stream: bool = False
    """The run is a CDC stream run: ranks follow :func:`rank` with ``stream=True``."""


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict and a short reason, logged by callers and kept in tests' failure messages."""

    outcome: Outcome
    reason: str

    @property
    def changes_status(self) -> bool:
        """True when the status column changes (and one event is written)."""
        return self.outcome is Outcome.CHANGE

    @property
    def changes_row(self) -> bool:
        """True when anything in the row changes (status or authority)."""
        return self.outcome is not Outcome.IGNORE


def _change(reason: str) -> Decision:
    return Decision(Outcome.CHANGE, reason)


def _ignore(reason: str) -> Decision:
    return Decision(Outcome.IGNORE, reason)


def _is_newer(write: ProposedWrite, current: PhaseState) -> bool | None:
    """True if the write's run is newer, False if older, None for the same run.

    Runs are ordered by creation time; two runs created in the same microsecond are ordered by id so
    every writer reaches the same verdict. With no run but a fence (after a reset), only runs
    created after the fence count as newer.
    """
    if current.run_created_at is None:
        return True
    if current.run_id is None:
        return write.run_created_at > current.run_created_at
    if write.run_id == current.run_id:
        return None
    return (write.run_created_at, write.run_id) > (current.run_created_at, current.run_id)


def decide(current: PhaseState, write: ProposedWrite) -> Decision:
    """Accept or ignore ``write`` given ``current``; see the module docstring for the ranking."""
    if type(write.to) is not type(current.status):
        raise TypeError(f"status {write.to!r} does not belong to the phase of {current.status!r}")
    if rank(write.to) == 0:
        return _ignore(f"{write.to} is set only by a reset, not by a run")

    newer = _is_newer(write, current)
    if newer is False:
        if current.run_id is None:
            return _ignore(f"stale run {write.run_id}: created before the phase was reset")
        return _ignore(f"stale run {write.run_id}: the phase already follows run {current.run_id}")
    if newer is True:
        if write.to == current.status:
            return Decision(
                Outcome.FOLLOW, f"run {write.run_id} is the newest run; {write.to} stays"
            )
        return _change(f"run {write.run_id} is the newest run of this phase")

    # Same run from here on.
    stream = write.stream
    authoritative = write.writer.is_authoritative
    held_by_authority = current.authority is not None and current.authority.is_authoritative
    if write.to == current.status:
        if authoritative and not held_by_authority:
            return Decision(Outcome.TAKE_AUTHORITY, f"{write.writer} confirms {write.to}")
        return _ignore(f"already {write.to}")
    if rank(write.to, stream=stream) < rank(current.status, stream=stream):
        return _ignore(f"late {write.to}: run {write.run_id} already reached {current.status}")
    if rank(write.to, stream=stream) > rank(current.status, stream=stream):
        return _change(f"run {write.run_id} moves forward to {write.to}")
    # Both terminal (rank 2) and different, or both running and different (cannot happen today).
    if authoritative and not held_by_authority:
        return _change(
            f"{write.writer} (run record) overrides {current.authority}'s {current.status}"
        )
    if held_by_authority:
        return _ignore(f"{current.authority} already recorded {current.status} from the run record")
    return _ignore(
        f"{current.status} stays: a {write.writer} write does not replace a terminal status"
    )
