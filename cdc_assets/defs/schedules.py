"""Schedules: the daily full-load refresh and the once-a-minute CDC heartbeat.

``full_load_refresh_schedule`` ships STOPPED: re-copying every ``full_load`` pipeline daily is a
choice an operator makes (turn it on in the UI). ``cdc_sync_schedule`` ships RUNNING: it advances
idle slots (WAL is released only when a batch confirms) and retries FAILED CDC once a minute.
"""

from typing import Any

import dagster as dg

from cdc_assets.defs.jobs import cdc_sync_job, full_load_job
from cdc_assets.defs.resources import ControlDb
from cdc_assets.defs.sensors import active_pipelines, cdc_request, wants_cdc
from cdc_assets.defs.tags import launch_tags
from cdc_assets.domain import Mode, Phase
from cdc_assets.settings import Settings


def _tick(context: dg.ScheduleEvaluationContext) -> str:
    when = context.scheduled_execution_time
    return when.isoformat() if when else "manual"


@dg.schedule(
    name="full_load_refresh_schedule",
    cron_schedule="0 3 * * *",
    job=full_load_job,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Re-runs the full load of every enabled full_load-mode pipeline (03:00 daily).",
)
def full_load_refresh_schedule(context: dg.ScheduleEvaluationContext, control: ControlDb) -> Any:
    """One full load per enabled ``full_load`` pipeline that has no run going."""
    settings = Settings.from_env()
    rows = [r for r in control.repository().list() if r.enabled and r.mode is Mode.FULL_LOAD]
    busy = active_pipelines(context.instance, [r.name for r in rows])
    requests = [
        dg.RunRequest(
            run_key=f"refresh:{r.name}:{_tick(context)}",
            partition_key=r.name,
            tags=launch_tags(r.name, Phase.FULL_LOAD, settings),
        )
        for r in rows
        if r.name not in busy
    ]
    return requests or dg.SkipReason("no enabled full_load pipeline is idle")


@dg.schedule(
    name="cdc_sync_schedule",
    cron_schedule="* * * * *",
    job=cdc_sync_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="A CDC batch every minute for every active CDC pipeline (heartbeat).",
)
def cdc_sync_schedule(context: dg.ScheduleEvaluationContext, control: ControlDb) -> Any:
    """One batch per enabled CDC pipeline whose full load completed and which is idle."""
    settings = Settings.from_env()
    rows = [r for r in control.repository().list() if wants_cdc(r)]
    busy = active_pipelines(context.instance, [r.name for r in rows])
    requests = [
        cdc_request(r, settings, f"heartbeat:{r.name}:{_tick(context)}")
        for r in rows
        if r.name not in busy
    ]
    return requests or dg.SkipReason("no idle active CDC pipeline")
