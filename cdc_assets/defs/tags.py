"""Run tags: how a run names its pipeline and phase, and the one place that sets missing ones.

Every writer maps a run to its pipeline the same way, so the coordinator's tag limit, the sensors
and the reconciler always agree on which runs belong to which row.
"""

from collections.abc import Iterable, Mapping

import dagster as dg

from cdc_assets.domain import Phase
from cdc_assets.settings import Settings

TAG_PIPELINE = "cdc/pipeline"
TAG_PHASE = "cdc/phase"
TAG_LOCK_CONFLICT = "cdc/lock_conflict"
TAG_PARTITION = "dagster/partition"
TAG_MAX_RUNTIME = "dagster/max_runtime_seconds"
#: ``true`` on the stream runs the supervisor launches: they run until stopped. Without it a
#: ``cdc_stream_job`` run catches up and ends (``cdc-assets run NAME --phase cdc``).
TAG_STREAM = "cdc/stream"
#: On check-only runs the product launches (``cdc_lag_idle_sensor``).
TAG_CHECK_ONLY = "cdc/check_only"

FULL_LOAD_JOB_NAME = "full_load_job"
CDC_JOB_NAME = "cdc_stream_job"
#: The CDC job's name before the stream (one run per batch): its old runs are still the
#: project's (retention, the backoff's history, the reconciler).
OLD_CDC_JOB_NAME = "cdc_sync_job"
CDC_JOB_NAMES = (CDC_JOB_NAME, OLD_CDC_JOB_NAME)
ASSET_JOB_NAME = "__ASSET_JOB"


_OWNERS: dict[dg.AssetKey, str] = {}
"""Target asset key -> pipeline, for every catalog this process built definitions from."""


def register_owners(owners: Mapping[tuple[str, ...], str]) -> None:
    """Remember which pipeline owns which table asset (called when definitions are built).

    Keys are only added: a run launched from definitions built earlier in this process still
    maps to its pipeline.
    """
    _OWNERS.update({dg.AssetKey(list(k)): v for k, v in owners.items()})


def pipeline_of_tags(tags: Mapping[str, str]) -> str | None:
    """The pipeline named by a run's tags: ``cdc/pipeline``, else a (pre-asset) partition key."""
    return tags.get(TAG_PIPELINE) or tags.get(TAG_PARTITION) or None


def pipeline_of_selection(keys: "Iterable[dg.AssetKey] | None") -> str | None:
    """The one pipeline whose table assets a run selected (a UI Materialize), else None."""
    owners = {_OWNERS.get(k) for k in keys or ()}
    owners.discard(None)
    return owners.pop() if len(owners) == 1 else None


def pipeline_of_run(run: dg.DagsterRun) -> str | None:
    """The pipeline a run loads or syncs; ``None`` for a check-only run (``Execute check``).

    Such a run of the partitioned ``cdc_lag`` check carries ``dagster/partition`` = pipeline like
    a UI full load, but materializes nothing: no status writer may take it for a load. Launched
    runs record their check selection; the product's own also carry ``cdc/check_only``.
    """
    if run.tags.get(TAG_CHECK_ONLY) == "true":
        return None
    if run.asset_check_selection and run.asset_selection is not None and not run.asset_selection:
        return None
    return pipeline_of_tags(run.tags) or pipeline_of_selection(run.asset_selection)


def phase_of(job_name: str | None, tags: Mapping[str, str] | None = None) -> Phase:
    """The run's phase: its ``cdc/phase`` tag, else its job (only the CDC job is not a load)."""
    tagged = (tags or {}).get(TAG_PHASE)
    if tagged in (Phase.FULL_LOAD.value, Phase.CDC.value):
        return Phase(tagged)
    return Phase.CDC if job_name in CDC_JOB_NAMES else Phase.FULL_LOAD


def is_stream(tags: Mapping[str, str]) -> bool:
    """True for a CDC stream run (launched by the supervisor), False for a catch-up run."""
    return tags.get(TAG_STREAM) == "true"


def is_lock_conflict(tags: Mapping[str, str]) -> bool:
    """True for a run that lost the pipeline lock: it never touched the row and must not."""
    return tags.get(TAG_LOCK_CONFLICT) == "true"


def launch_tags(pipeline: str, phase: Phase, settings: Settings) -> dict[str, str]:
    """Tags for a run that a sensor, schedule or ``cdc-assets run`` launches."""
    tags = {TAG_PIPELINE: pipeline, TAG_PHASE: phase.value}
    if settings.max_runtime_s > 0:
        tags[TAG_MAX_RUNTIME] = str(settings.max_runtime_s)
    return tags


def complete_run_tags(
    instance: dg.DagsterInstance, run: dg.DagsterRun, pipeline: str, settings: Settings
) -> None:
    """Add the tags a UI launch lacks (a Materialize carries only its asset selection), at start.

    ``max_runtime_seconds`` run monitoring, the ``cdc/pipeline`` views, the reconciler's run
    queries and the coordinator's one-run-per-pipeline limit all key on these tags.
    """
    wanted = launch_tags(pipeline, phase_of(run.job_name, run.tags), settings)
    missing = {k: v for k, v in wanted.items() if k not in run.tags}
    if missing:
        instance.add_run_tags(run.run_id, missing)
