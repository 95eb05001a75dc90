"""Which pipelines have a run queued or going: every launcher asks before it launches."""

from collections.abc import Sequence

import dagster as dg

from cdc_assets.defs.tags import TAG_PARTITION, TAG_PIPELINE

ACTIVE_STATUSES = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def active_pipelines(instance: dg.DagsterInstance, names: Sequence[str]) -> set[str]:
    """Pipelines among ``names`` with a queued or running run (by either pipeline tag)."""
    busy: set[str] = set()
    if not names:
        return busy
    for tag in (TAG_PIPELINE, TAG_PARTITION):
        for record in instance.get_run_records(
            filters=dg.RunsFilter(tags={tag: list(names)}, statuses=ACTIVE_STATUSES)
        ):
            value = record.dagster_run.tags.get(tag)
            if value:
                busy.add(value)
    return busy
