"""Jobs: ``full_load_job`` (one shared asset job over every pipeline's tables), ``cdc_stream_job``.

One full-load job for all pipelines, not one per pipeline: a run selects the assets of its
pipeline (``RunRequest.asset_selection``), and one job keeps the code location's snapshot small
(a job per pipeline tripled it at a hundred pipelines). The ``cdc_lag`` checks are left out: CDC
batches evaluate them, not a full load. Both use the in-process executor: the op runs in the run
worker itself, so killing or terminating the run leaves no orphaned step process that could
finish (and fire a hook) later.
"""

from typing import Any

import dagster as dg

from cdc_assets.defs.catalog import Catalog
from cdc_assets.defs.cdc import cdc_stream_hooked
from cdc_assets.defs.check_specs import lag_keys
from cdc_assets.defs.tags import CDC_JOB_NAME, FULL_LOAD_JOB_NAME, TAG_PHASE
from cdc_assets.domain import Phase


def full_load_job(catalog: Catalog) -> Any:
    """The shared full-load job over the catalog's table assets (their row-count checks too)."""
    keys = [dg.AssetKey(list(k)) for p in catalog.pipelines for k in p.target_keys()]
    lag = [k for p in catalog.pipelines for k in lag_keys(p)]
    return dg.define_asset_job(
        name=FULL_LOAD_JOB_NAME,
        selection=dg.AssetSelection.assets(*keys) - dg.AssetSelection.checks(*lag),
        tags={TAG_PHASE: Phase.FULL_LOAD.value},
        executor_def=dg.in_process_executor,
        description="Full load of one pipeline: a run selects that pipeline's table assets "
        "(tag cdc/pipeline).",
    )


@dg.job(
    name=CDC_JOB_NAME,
    tags={TAG_PHASE: Phase.CDC.value},
    executor_def=dg.in_process_executor,
    description="Streams the changes of one pipeline (tag cdc/pipeline) until stopped (tag "
    "cdc/stream=true, the supervisor's runs), or catches up and ends (no tag).",
)
def cdc_stream_job() -> None:
    """CDC of the pipeline named by the run's ``cdc/pipeline`` tag (``defs/cdc.py``)."""
    cdc_stream_hooked()
