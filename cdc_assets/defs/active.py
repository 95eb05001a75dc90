"""Which pipelines have a run queued or going: every launcher asks before it launches."""

from collections.abc import Callable, Sequence

import dagster as dg

from cdc_assets.defs.tags import TAG_PARTITION, TAG_PIPELINE, TAG_STREAM

ACTIVE_STATUSES = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
FINISHED_STATUSES = [
    dg.DagsterRunStatus.SUCCESS,
    dg.DagsterRunStatus.FAILURE,
    dg.DagsterRunStatus.CANCELED,
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


def cancel_streams(
    instance: dg.DagsterInstance,
    pipeline: str,
    *,
    keep: str | None = None,
    on_error: Callable[[str, Exception], None] | None = None,
) -> list[str]:
    """Cancel ``pipeline``'s queued or going stream runs (not ``keep``); the ids asked to stop.

    A stream holds the pipeline lock for as long as it runs, so whoever needs the lock (a full
    load, ``pipeline reset``/``remove``) asks its stream to stop, then waits for the lock.
    ``on_error`` is told of a cancel Dagster refused with an error; without it the error raises.
    """
    records = instance.get_run_records(
        filters=dg.RunsFilter(
            tags={TAG_PIPELINE: pipeline, TAG_STREAM: "true"}, statuses=ACTIVE_STATUSES
        )
    )
    canceled = []
    for record in records:
        run_id = record.dagster_run.run_id
        if run_id == keep:
            continue
        try:
            instance.run_coordinator.cancel_run(run_id)
        except Exception as exc:
            if on_error is None:
                raise
            on_error(run_id, exc)
            continue
        canceled.append(run_id)
    return canceled
