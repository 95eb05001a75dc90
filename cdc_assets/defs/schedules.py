"""Schedules: the daily full-load refresh and the once-a-minute CDC heartbeat.

``full_load_refresh_schedule`` ships STOPPED: re-copying every ``full_load`` pipeline daily is a
choice an operator makes (turn it on in the UI). ``cdc_sync_schedule`` ships RUNNING: it advances
idle slots (WAL is released only when a batch confirms) and retries FAILED CDC with a backoff
read from the run records (``status/backoff.py``): next tick, then 1, 2, 4 ... minutes up to
``CDC_RETRY_MAX_S``.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from cdc_assets.control.repository import PipelineRow
from cdc_assets.defs.active import active_pipelines
from cdc_assets.defs.catalog import Catalog
from cdc_assets.defs.jobs import cdc_sync_job
from cdc_assets.defs.resources import ControlDb
from cdc_assets.defs.run_status import run_fact
from cdc_assets.defs.sensors import cdc_request, full_load_request
from cdc_assets.defs.tags import CDC_JOB_NAME, FULL_LOAD_JOB_NAME, TAG_PIPELINE
from cdc_assets.domain import CdcStatus, Mode
from cdc_assets.settings import Settings
from cdc_assets.status.backoff import RetryDecision, decide_retry
from cdc_assets.status.rules import wants_cdc

FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
#: Enough history to reach any cap up to 2**10 minutes; older runs cannot change the delay.
HISTORY = 12


def _tick(context: dg.ScheduleEvaluationContext) -> str:
    when = context.scheduled_execution_time
    return when.isoformat() if when else "manual"


def full_load_refresh_schedule(catalog: Catalog) -> Any:
    """``full_load_refresh_schedule`` over the pipelines whose assets are loaded."""
    loaded = {p.name: p for p in catalog.pipelines}

    @dg.schedule(
        name="full_load_refresh_schedule",
        cron_schedule="0 3 * * *",
        job_name=FULL_LOAD_JOB_NAME,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Re-runs the full load of every enabled full_load-mode pipeline (03:00 daily).",
    )
    def _refresh(context: dg.ScheduleEvaluationContext, control: ControlDb) -> Any:
        """One full load per enabled ``full_load`` pipeline that has no run going."""
        settings = Settings.from_env()
        rows = [
            r
            for r in control.repository().list()
            if r.enabled and r.mode is Mode.FULL_LOAD and r.name in loaded
        ]
        busy = active_pipelines(context.instance, [r.name for r in rows])
        requests = [
            full_load_request(loaded[r.name], settings, f"refresh:{r.name}:{_tick(context)}")
            for r in rows
            if r.name not in busy
        ]
        return requests or dg.SkipReason("no enabled full_load pipeline is idle")

    return _refresh


@dg.schedule(
    name="cdc_sync_schedule",
    cron_schedule="* * * * *",
    job=cdc_sync_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="A CDC batch every minute for every active CDC pipeline (heartbeat).",
)
def cdc_sync_schedule(context: dg.ScheduleEvaluationContext, control: ControlDb) -> Any:
    """One batch per enabled CDC pipeline whose full load completed and which is idle.

    FAILED pipelines are retried only when their backoff is over.
    """
    settings = Settings.from_env()
    rows = [r for r in control.repository().list() if wants_cdc(r)]
    busy = active_pipelines(context.instance, [r.name for r in rows])
    now = datetime.now(UTC)
    requests, waiting = [], []
    for row in rows:
        if row.name in busy:
            continue
        if row.cdc_status is CdcStatus.FAILED:
            decision = retry_decision(context.instance, row, settings, now)
            if not decision.due:
                waiting.append(
                    f"{row.name} (failed {decision.failures}x, next retry at "
                    f"{decision.not_before:%H:%M:%S} UTC)"
                )
                continue
        requests.append(cdc_request(row, settings, f"heartbeat:{row.name}:{_tick(context)}"))
    if requests:
        return requests
    reason = "no idle active CDC pipeline"
    if waiting:
        reason += "; backing off: " + ", ".join(waiting)
    return dg.SkipReason(reason)


def retry_decision(
    instance: dg.DagsterInstance, row: PipelineRow, settings: Settings, now: datetime
) -> RetryDecision:
    """The backoff of a FAILED CDC pipeline, from its latest finished CDC runs.

    Only runs since the current full load count: failures before a reset and reload (a dropped
    slot, say) say nothing about the new slot.
    """
    records = instance.get_run_records(
        filters=dg.RunsFilter(
            job_name=CDC_JOB_NAME,
            tags={TAG_PIPELINE: row.name},
            statuses=FINISHED,
            created_after=row.full_load_run_created_at,
        ),
        limit=HISTORY,
    )
    facts = (run_fact(record) for record in records)
    history = [fact for fact in facts if fact is not None and not fact.lock_conflict]
    return decide_retry(history, now=now, cap=timedelta(seconds=settings.cdc_retry_max_s))
