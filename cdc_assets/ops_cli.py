"""``cdc-assets run`` and ``cdc-assets reconcile``: the Dagster side of the CLI.

``run`` executes the pipeline's job in this process against the configured instance
(``DAGSTER_HOME``), with the same asset selection and tags as a launched run, so it shows in the
UI and the op and hooks write its status. Run-status sensors never see in-process runs, so the
reconciler confirms the row from the run record before the command returns.
"""

import os
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

from cdc_assets.domain import Phase

if TYPE_CHECKING:
    import dagster as dg


def execute_pipeline(
    instance: "dg.DagsterInstance", name: str, phase: Phase, *, defs: Any = None
) -> "dg.ExecuteInProcessResult":
    """Run the pipeline's job in-process exactly as a launched run (selection, tags, hooks).

    A full load selects the pipeline's table assets in ``full_load_job``; if the given
    definitions were built before the row existed (or changed its keys), they are built again
    from the control table now, as a reloaded code location would.
    """
    import dagster as dg

    from cdc_assets.control.repository import PipelineRepository
    from cdc_assets.definitions import build_defs
    from cdc_assets.defs.catalog import PipelineAssets
    from cdc_assets.defs.check_specs import row_count_keys
    from cdc_assets.defs.tags import CDC_JOB_NAME, FULL_LOAD_JOB_NAME, launch_tags
    from cdc_assets.settings import Settings, control_db_url

    settings = Settings.from_env()
    definitions = defs if defs is not None else build_defs(settings)
    tags = launch_tags(name, phase, settings)
    if phase is Phase.CDC:
        job = definitions.resolve_job_def(CDC_JOB_NAME)
        return job.execute_in_process(instance=instance, tags=tags, raise_on_error=False)
    row = PipelineRepository.from_url(control_db_url()).get(name)
    row.spec  # noqa: B018  (a row no run can use raises its ConfigError, naming the fix)
    assets = PipelineAssets.of_row(row)
    keys = {dg.AssetKey(list(k)) for k in assets.target_keys()}
    job = definitions.resolve_job_def(FULL_LOAD_JOB_NAME)
    if not keys <= set(job.asset_layer.asset_graph.get_all_asset_keys()):
        job = build_defs(settings).resolve_job_def(FULL_LOAD_JOB_NAME)
    # As the launch sensor launches it: the tables and their row-count checks (no lag check).
    subset = job.get_subset(asset_selection=keys, asset_check_selection=set(row_count_keys(assets)))
    result: dg.ExecuteInProcessResult = subset.execute_in_process(
        instance=instance, tags=tags, raise_on_error=False
    )
    return result


def _repository() -> Any:
    from cdc_assets.control.repository import PipelineRepository
    from cdc_assets.settings import control_db_url

    return PipelineRepository.from_url(control_db_url())


def run_pipeline(name: str, phase: str = "full_load") -> int:
    """Execute one run of ``name``; 0 on success, 1 with a one-line reason on stderr otherwise."""
    import dagster as dg

    from cdc_assets.defs.reconciler import reconcile
    from cdc_assets.defs.run_status import run_failure_message
    from cdc_assets.errors import CdcError

    try:
        which = Phase(phase)
        repo = _repository()
        repo.get(name)
        instance = dg.DagsterInstance.get()
    except (CdcError, ValueError, dg.DagsterInvariantViolationError) as exc:
        print(f"cdc-assets run {name}: {exc}", file=sys.stderr)
        return 1
    result = execute_pipeline(instance, name, which)
    reconcile(instance, repo, [name])
    run_id = result.dagster_run.run_id
    if result.success:
        row = repo.get(name)
        status = row.full_load_status if which is Phase.FULL_LOAD else row.cdc_status
        print(f"{name}: {which.value} run {run_id} succeeded ({status})")
        return 0
    reason = run_failure_message(instance, run_id) or "run failed"
    print(f"cdc-assets run {name}: run {run_id} failed: {reason}", file=sys.stderr)
    return 1


def reconcile_once() -> int:
    """Reconcile every pipeline once; prints each repair; 0 unless it could not run."""
    import dagster as dg

    from cdc_assets.defs.reconciler import reconcile
    from cdc_assets.errors import CdcError

    try:
        repo = _repository()
        instance = dg.DagsterInstance.get()
        outcomes = reconcile(instance, repo)
    except (CdcError, ValueError, dg.DagsterInvariantViolationError) as exc:
        print(f"cdc-assets reconcile: {exc}", file=sys.stderr)
        return 1
    changed = [o for o in outcomes if o.changed]
    for o in changed:
        w = o.write
        print(f"{w.pipeline}: {w.phase.value} -> {w.status} (run {w.run_id})")
    print(f"reconciled {len(changed)} row(s)")
    return 0


STREAM_STOP_WAIT_S = 60.0


@contextmanager
def lock_stopping_stream(repo: Any, name: str) -> Iterator[None]:
    """The pipeline lock for ``pipeline reset``/``remove``: a running stream is canceled first.

    A CDC pipeline's stream run holds the lock while it runs. If the lock is taken and this
    machine reaches the Dagster instance (``DAGSTER_HOME``), the pipeline's stream runs are
    canceled (they commit what they applied and exit) and the lock is awaited for up to
    :data:`STREAM_STOP_WAIT_S`; otherwise, or past that, :class:`ConcurrentRunError` names the
    holder. ``repo.pipeline_lock`` raises on entering the ``with``, not when called.
    """
    import dagster as dg

    from cdc_assets.defs.active import cancel_streams
    from cdc_assets.errors import ConcurrentRunError

    with ExitStack() as stack:
        try:
            stack.enter_context(repo.pipeline_lock(name))
        except ConcurrentRunError:
            if not os.environ.get("DAGSTER_HOME"):
                raise
            if not cancel_streams(dg.DagsterInstance.get(), name):
                raise
            stack.enter_context(repo.pipeline_lock(name, wait_s=STREAM_STOP_WAIT_S))
        yield
