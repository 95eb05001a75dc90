"""Status writes from inside a run (op and hooks) and from run records (sensors, reconciler).

Every writer goes through :func:`apply_write`, which turns a :class:`Write` into one guarded
repository transition; the repository decides whether it changes the row. The helpers here turn
Dagster objects (runs, run records, failure events) into the plain facts of
``cdc_assets.status.reconcile`` so all writers map a run the same way.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import dagster as dg

from cdc_assets.defs.tags import is_lock_conflict, is_stream, phase_of, pipeline_of_run
from cdc_assets.domain import Phase, Writer
from cdc_assets.errors import CdcError
from cdc_assets.pg.connect import first_line
from cdc_assets.secrets import scrub
from cdc_assets.status.machine import Status
from cdc_assets.status.reconcile import RunFact, RunState, Write

if TYPE_CHECKING:
    from cdc_assets.control.repository import PipelineRepository


def _error_class_names(base: type[BaseException]) -> set[str]:
    names = {base.__name__}
    for sub in base.__subclasses__():
        names |= _error_class_names(sub)
    return names


@dataclass(frozen=True, slots=True)
class RunIdentity:
    """Which pipeline and phase a run is for, and its creation time (the guards order by it)."""

    pipeline: str
    phase: Phase
    run_id: str
    created_at: datetime
    stream: bool = False


def aware(ts: datetime | float) -> datetime:
    """A UTC-aware datetime from Dagster's timestamps (floats or naive UTC datetimes)."""
    if isinstance(ts, datetime):
        return ts if ts.tzinfo else ts.replace(tzinfo=UTC)
    return datetime.fromtimestamp(ts, tz=UTC)


def identify(instance: dg.DagsterInstance, run_id: str) -> RunIdentity | None:
    """The run's pipeline, phase and creation time from its record; ``None`` if not ours."""
    record = instance.get_run_record_by_id(run_id)
    if record is None:
        return None
    run = record.dagster_run
    pipeline = pipeline_of_run(run)
    if pipeline is None:
        return None
    return RunIdentity(
        pipeline=pipeline,
        phase=phase_of(run.job_name, run.tags),
        run_id=run_id,
        created_at=aware(record.create_timestamp),
        stream=is_stream(run.tags),
    )


def run_fact(record: Any, *, error: str | None = None) -> RunFact | None:
    """A run record as the reconciler's :class:`RunFact`; ``None`` for runs of no pipeline."""
    run: dg.DagsterRun = record.dagster_run
    pipeline = pipeline_of_run(run)
    if pipeline is None:
        return None
    end = getattr(record, "end_time", None)
    return RunFact(
        run_id=run.run_id,
        pipeline=pipeline,
        phase=phase_of(run.job_name, run.tags),
        state=RunState(run.status.value),
        created_at=aware(record.create_timestamp),
        lock_conflict=is_lock_conflict(run.tags),
        error=error,
        ended_at=aware(end) if end else None,
        stream=is_stream(run.tags),
    )


def error_text(exc: BaseException) -> str:
    """``last_error`` for an exception: a ``CdcError``'s own line, else a scrubbed first line.

    A :class:`PipelineFailure` (what ops raise, and what hooks see as ``op_exception``) carries
    that line as its description already.
    """
    if isinstance(exc, CdcError):
        return exc.for_row()
    if isinstance(exc, PipelineFailure) and exc.description:
        return scrub(first_line(exc.description))[:2000]
    return scrub(f"{type(exc).__name__}: {first_line(str(exc))}")[:2000]


class PipelineFailure(dg.Failure):
    """A run's failure as the UI shows it first: the project's one line, fix included.

    Dagster wraps any other exception from an op in ``DagsterExecutionStepExecutionError``,
    whose "Error occurred while executing op" heads the run page; a ``Failure`` is reported as
    it is, with its description as the message and its metadata beside it. Raised ``from`` the
    original error, whose traceback follows below the message (and where the sensors find the
    ``CdcError`` for ``last_error``).
    """


class SetupFailure(PipelineFailure, dg.DagsterError):
    """A :class:`PipelineFailure` raised by resource set-up.

    Dagster wraps a resource's exception in ``DagsterResourceFunctionError`` ("Error executing
    resource_fn on ResourceDefinition connections"), which heads the run's failure event; a
    ``DagsterError`` passes its user-code boundary unwrapped, so the run's failure event is this
    error and leads with the project's line. The run still fails before the op (no hook).
    """


def failure_metadata(exc: BaseException) -> dict[str, Any]:
    """What the UI lists under the message: the parts of the error, all secret-free."""
    meta: dict[str, Any] = {"error": error_text(exc)}
    if isinstance(exc, CdcError):
        meta["kind"] = exc.kind
        for key, value in (("pipeline", exc.pipeline), ("table", exc.table), ("fix", exc.fix)):
            if value:
                meta[key] = scrub(value)
    return meta


def pipeline_failure(exc: BaseException, *, setup: bool = False) -> PipelineFailure:
    """The Failure to raise (from ``exc``): its description is the ``last_error`` line."""
    cls = SetupFailure if setup else PipelineFailure
    return cls(description=error_text(exc), metadata=failure_metadata(exc))


def error_info_text(info: Any) -> str | None:
    """The most useful line of a serialized error chain (``SerializableErrorInfo``).

    Resource-init and step failures wrap the product's ``CdcError`` in Dagster errors; the
    innermost ``CdcError`` message is the one an operator can act on, so it wins.
    """
    chain = []
    seen = 0
    while info is not None and seen < 10:
        chain.append(info)
        info = getattr(info, "cause", None) or getattr(info, "context", None)
        seen += 1
    for item in chain:
        if getattr(item, "cls_name", None) in _error_class_names(CdcError):
            return scrub(first_line(item.message.split(": ", 1)[-1]))[:2000]
    for item in reversed(chain):
        message = getattr(item, "message", None)
        if message:
            return scrub(first_line(message))[:2000]
    return None


def failure_message(events: Iterable[Any]) -> str | None:
    """The failure reason from a run's step-failure / run-failure events."""
    fallback = None
    for event in events:
        dagster_event = getattr(event, "dagster_event", event)
        data = getattr(dagster_event, "event_specific_data", None)
        info = getattr(data, "error", None)
        text = error_info_text(info) if info is not None else None
        if text:
            return text
        if fallback is None:
            fallback = getattr(dagster_event, "message", None)
    return scrub(first_line(fallback))[:2000] if fallback else None


def run_failure_message(instance: dg.DagsterInstance, run_id: str) -> str | None:
    """Read the run's failure reason back from its event log (reconciler path)."""
    records = instance.get_records_for_run(
        run_id,
        of_type={
            dg.DagsterEventType.STEP_FAILURE,
            dg.DagsterEventType.RUN_FAILURE,
            dg.DagsterEventType.RESOURCE_INIT_FAILURE,
        },
    ).records
    ordered = sorted(
        (r.event_log_entry for r in records),
        key=lambda e: (
            0 if e.dagster_event and e.dagster_event.event_type_value != "RUN_FAILURE" else 1
        ),
    )
    return failure_message(ordered)


def apply_write(repo: "PipelineRepository", write: Write, writer: Writer) -> bool:
    """Hand one write to the repository's guarded transition; True if the row changed."""
    return repo.apply(write, writer)


def write_for(
    ident: RunIdentity,
    status: Status,
    *,
    error: str | None = None,
    message: str | None = None,
    rows: int | None = None,
) -> Write:
    """A write for the run ``ident`` from inside the run (op or hook)."""
    return Write(
        pipeline=ident.pipeline,
        phase=ident.phase,
        status=status,
        run_id=ident.run_id,
        run_created_at=ident.created_at,
        error=error,
        message=message,
        rows=rows,
        stream=ident.stream,
    )
