"""The status bracket around a run's body, shared by the full-load asset and the CDC op.

Enter: take the pipeline lock (a lock loser tags its run and fails with the row untouched), write
the phase's running status if it has one (``IN_PROGRESS`` for a full load; CDC has none), then
read the row once, under the lock, for the body. Exit: the final write, ``FAILED`` with the
reason (raising :class:`PipelineFailure`) if the body raised, else the success status, after the
body's committed work, as a best-effort write that never fails the run. Both ops used to spell
this bracket out each; one copy keeps their status promises the same.
"""

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import dagster as dg

from cdc_assets.defs.active import cancel_streams
from cdc_assets.defs.run_status import (
    RunIdentity,
    apply_write,
    error_text,
    identify,
    pipeline_failure,
    write_for,
)
from cdc_assets.defs.tags import TAG_LOCK_CONFLICT
from cdc_assets.domain import Phase, Writer
from cdc_assets.errors import ConcurrentRunError, ConnectError
from cdc_assets.status.reconcile import running_status, step_status

if TYPE_CHECKING:
    from cdc_assets.control.repository import PipelineRepository
    from cdc_assets.control.rows import PipelineRow

Context = dg.AssetExecutionContext | dg.OpExecutionContext
#: How long a full load waits for the lock of the stream run it canceled (it commits and exits
#: within a batch; a cancel reaches the op in well under a second).
PREEMPT_WAIT_S = 60.0


@dataclass(slots=True)
class RunBracket:
    """What the body gets: the run, its row (read once, under the lock), and what to write.

    The body sets :attr:`rows` (a full load's row count) and appends to :attr:`after_success`
    (writes of committed progress, e.g. the CDC LSN) before it returns; the bracket writes them,
    then the success status, when the body is done.
    """

    ident: RunIdentity
    row: "PipelineRow"
    rows: int | None = None
    after_success: list[Callable[[], object]] = field(default_factory=list)


def _take_lock(
    context: Context, repo: "PipelineRepository", pipeline: str, phase: Phase, stack: ExitStack
) -> None:
    """Enter the pipeline lock into ``stack``; for a full load, after stopping the stream run.

    A CDC pipeline's stream holds the lock for as long as it runs, so a full load (a UI
    Materialize, a reload) cancels it and waits up to :data:`PREEMPT_WAIT_S` for the lock; the
    supervisor starts a new stream once the load is done. A second full load still loses at once.
    ``repo.pipeline_lock`` raises :class:`ConcurrentRunError` on entry, not when called.
    """
    try:
        stack.enter_context(repo.pipeline_lock(pipeline))
        return
    except ConcurrentRunError:
        if phase is not Phase.FULL_LOAD:
            raise
        stopped = cancel_streams(
            context.instance,
            pipeline,
            keep=context.run_id,
            on_error=lambda run_id, exc: context.log.warning(
                f"cannot cancel stream run {run_id}: {error_text(exc)}"
            ),
        )
        if not stopped:
            raise
    context.log.info(f"pipeline {pipeline!r}: stopping its stream run {', '.join(stopped)} first")
    stack.enter_context(repo.pipeline_lock(pipeline, wait_s=PREEMPT_WAIT_S))


@contextmanager
def pipeline_lock(
    context: Context, repo: "PipelineRepository", pipeline: str, phase: Phase = Phase.CDC
) -> Iterator[None]:
    """Hold the pipeline lock; a lock loser tags itself and fails untouched.

    The tag ``cdc/lock_conflict=true`` tells sensors and the reconciler to ignore this run: it is a
    duplicate launch, and the row belongs to the run that holds the lock.
    """
    with ExitStack() as stack:
        try:
            _take_lock(context, repo, pipeline, phase, stack)
        except ConcurrentRunError as exc:
            context.instance.add_run_tags(context.run_id, {TAG_LOCK_CONFLICT: "true"})
            context.log.error(f"pipeline {pipeline!r}: another run holds the lock; row left alone")
            raise pipeline_failure(exc) from exc
        yield


@contextmanager
def status_bracket(
    context: Context,
    repo: "PipelineRepository",
    pipeline: str,
    phase: Phase,
    *,
    success_message: str,
) -> Iterator[RunBracket]:
    """Lock, running status, row; then FAILED (raising) or the success status as the last act."""
    found = identify(context.instance, context.run_id)
    if found is None or found.pipeline != pipeline:
        raise dg.Failure(
            f"run {context.run_id} is not a run of pipeline {pipeline!r} alone: its "
            "cdc/pipeline tag names another pipeline, or it selects the tables of several "
            "pipelines; materialize one pipeline's tables per run"
        )
    ident = RunIdentity(pipeline, phase, found.run_id, found.created_at, stream=found.stream)
    with pipeline_lock(context, repo, pipeline, phase):
        entry = running_status(phase, stream=ident.stream)
        if entry is not None:
            apply_write(repo, write_for(ident, entry, message="op started"), Writer.OP)
        try:
            run = RunBracket(ident=ident, row=repo.get(pipeline))
            yield run
        except Exception as exc:
            apply_write(
                repo,
                write_for(
                    ident,
                    step_status(phase, success=False, stream=ident.stream),
                    error=error_text(exc),
                    message="op failed",
                ),
                Writer.OP,
            )
            raise pipeline_failure(exc) from exc
        # The work is committed: bookkeeping failures must not fail the run (write_after_success).
        for write in run.after_success:
            write_after_success(context, write)
        write_after_success(
            context,
            lambda: apply_write(
                repo,
                write_for(
                    ident,
                    step_status(phase, success=True, stream=ident.stream),
                    message=success_message,
                    rows=run.rows,
                ),
                Writer.OP,
            ),
        )


def write_after_success(context: Context, write: Callable[[], object]) -> None:
    """The op's status write after the data is committed: best effort, never failing the run.

    The repository already retried with backoff; if the control DB is still unreachable, failing
    the run would throw away a committed load (FAILED, reset, reload). The run ends SUCCESS
    instead and the success sensor or the reconciler writes the row from the run record once the
    database is back (docs/reliability.md, control DB outage).
    """
    try:
        write()
    except ConnectError as exc:
        context.log.warning(f"status not written, the run-status sensor will: {exc.for_row()}")
