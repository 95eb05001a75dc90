"""Jobs: ``full_load_job`` (the asset's partition) and ``cdc_sync_job`` (one CDC batch).

Both use the in-process executor: the op runs in the run worker itself, so killing or
terminating the run leaves no orphaned step process that could finish (and fire a hook) later.
"""

import dagster as dg

from cdc_assets.defs.cdc import LAG_CHECK, cdc_sync_hooked
from cdc_assets.defs.full_load import TARGET_TABLES
from cdc_assets.defs.partitions import PIPELINES
from cdc_assets.defs.tags import CDC_JOB_NAME, FULL_LOAD_JOB_NAME, TAG_PHASE
from cdc_assets.domain import Phase

full_load_job = dg.define_asset_job(
    name=FULL_LOAD_JOB_NAME,
    # The lag check is evaluated by CDC batches, not by a full load.
    selection=dg.AssetSelection.assets(TARGET_TABLES)
    - dg.AssetSelection.checks(dg.AssetCheckKey(TARGET_TABLES, LAG_CHECK)),
    partitions_def=PIPELINES,
    tags={TAG_PHASE: Phase.FULL_LOAD.value},
    executor_def=dg.in_process_executor,
    description="Full load of one pipeline (partition key = pipeline name).",
)


@dg.job(
    name=CDC_JOB_NAME,
    partitions_def=PIPELINES,
    tags={TAG_PHASE: Phase.CDC.value},
    executor_def=dg.in_process_executor,
    description="Applies all available changes of one pipeline, then exits.",
)
def cdc_sync_job() -> None:
    """One CDC batch for the partition's pipeline."""
    cdc_sync_hooked()
