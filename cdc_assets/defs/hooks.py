"""Success/failure hooks: a second fast path for the status, never authoritative.

They run in the step's process after the op, so they can fire after Dagster already ended the run
(an orphaned step): the repository's guards make such a late write change nothing, and the
sensors and reconciler (run-record writers) win for the same run. A hook that raises would be
swallowed by Dagster (HOOK_ERRORED, run still SUCCESS), so these log instead of raising.
"""

import dagster as dg

from cdc_assets.defs.run_status import apply_write, error_text, identify, write_for
from cdc_assets.defs.tags import is_lock_conflict
from cdc_assets.domain import Writer
from cdc_assets.status.reconcile import step_status


def _record(context: dg.HookContext, *, success: bool) -> None:
    try:
        run = context.instance.get_run_by_id(context.run_id)
        if run is None or is_lock_conflict(run.tags):
            return
        ident = identify(context.instance, context.run_id)
        if ident is None:
            return
        status = step_status(ident.phase, success=success, stream=ident.stream)
        error = None
        if not success:
            exc = context.op_exception
            error = error_text(exc) if exc is not None else f"step {context.step_key} failed"
        changed = apply_write(
            context.resources.control.repository(),
            write_for(ident, status, error=error, message=f"hook: step {context.step_key}"),
            Writer.HOOK,
        )
        context.log.debug(f"hook wrote {status} for {ident.pipeline}: changed={changed}")
    except Exception as exc:  # a raising hook is swallowed by Dagster: log instead
        context.log.warning(f"status hook could not write: {error_text(exc)}")


@dg.success_hook(name="record_success_hook", required_resource_keys={"control"})
def record_success_hook(context: dg.HookContext) -> None:
    """Write COMPLETED (full load) or ACTIVE (CDC) for this run, subject to the guards."""
    _record(context, success=True)


@dg.failure_hook(name="record_failure_hook", required_resource_keys={"control"})
def record_failure_hook(context: dg.HookContext) -> None:
    """Write FAILED with the op's error for this run, subject to the guards."""
    _record(context, success=False)
