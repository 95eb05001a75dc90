"""Schedules: the daily full-load refresh (the retention schedule is ``defs/retention.py``).

``full_load_refresh_schedule`` ships STOPPED: re-copying every ``full_load`` pipeline daily is a
choice an operator makes (turn it on in the UI). CDC has no schedule: its stream runs are kept
alive by ``cdc_stream_supervisor`` (``defs/supervisor.py``), which also retries failed ones.
"""

from typing import Any

import dagster as dg

from cdc_assets.defs.active import active_pipelines
from cdc_assets.defs.catalog import Catalog
from cdc_assets.defs.resources import ControlDb
from cdc_assets.defs.sensors import full_load_request
from cdc_assets.defs.tags import FULL_LOAD_JOB_NAME
from cdc_assets.domain import Mode
from cdc_assets.settings import Settings


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
