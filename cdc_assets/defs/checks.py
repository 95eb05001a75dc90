"""Declared asset checks of ``target_tables`` that are evaluated outside the full load.

``cdc_lag`` is partitioned like its asset (one partition per pipeline), so every pipeline has its
own result in the UI. Three evaluators, one meaning (source WAL after the slot's confirmed
position): each CDC batch reports its pipeline's lag; running the check by hand measures the
partition's slot now; ``cdc_lag_idle_sensor`` measures the slots of CDC pipelines that get no
batches (disabled or STOPPED): their slot still holds WAL, which is exactly what the check exists
to show.
"""

import time
from typing import TYPE_CHECKING, Any

import dagster as dg

from cdc_assets.defs.cdc import LAG_CHECK, lag_check_result
from cdc_assets.defs.full_load import TARGET_TABLES
from cdc_assets.defs.partitions import PIPELINES
from cdc_assets.defs.resources import ControlDb, PostgresConnections
from cdc_assets.defs.run_status import error_text
from cdc_assets.defs.sensors import active_pipelines
from cdc_assets.defs.tags import TAG_CHECK_ONLY
from cdc_assets.domain import CdcStatus, FullLoadStatus, Mode
from cdc_assets.settings import Settings

if TYPE_CHECKING:
    from cdc_assets.control.repository import PipelineRow

#: Idle slots change slowly; once a minute matches the CDC heartbeat of active pipelines.
IDLE_LAG_INTERVAL_S = 60
LAG_KEY = dg.AssetCheckKey(TARGET_TABLES, LAG_CHECK)


def lag_check_description(settings: Settings) -> str:
    """The check's description: what it measures and the thresholds (never plotted metadata)."""
    return (
        "CDC lag of the partition's pipeline: bytes of source WAL written after its replication "
        "slot's confirmed position (what the slot still holds on the source). Passes up to "
        f"CDC_LAG_WARN_BYTES ({settings.lag_warn_bytes}); WARN above it, ERROR above "
        f"CDC_LAG_FAIL_BYTES ({settings.lag_fail_bytes}). Reported by each CDC batch, every "
        "minute for disabled or STOPPED pipelines, and measured now when executed by hand. A "
        "full_load pipeline, or one whose first full load has not completed, has no slot and "
        "passes."
    )


def evaluate_lag(
    row: "PipelineRow", connections: PostgresConnections, settings: Settings
) -> dg.AssetCheckEvaluation:
    """Measure ``row``'s slot now; a missing slot after a completed load fails with the fix."""
    from cdc_assets.engine.cdc import slot_lag_bytes

    if row.mode is not Mode.FULL_LOAD_AND_CDC or row.full_load_status is not (
        FullLoadStatus.COMPLETED
    ):
        return dg.AssetCheckEvaluation(
            asset_key=TARGET_TABLES,
            check_name=LAG_CHECK,
            passed=True,
            partition=row.name,
            description=f"pipeline {row.name!r}: no replication slot yet (mode "
            f"{row.mode.value}, full load {row.full_load_status.value}), nothing held on the "
            "source",
            metadata={"pipeline": row.name},
        )
    try:
        resolved = connections.resolved(row.spec)
        lag = slot_lag_bytes(row.spec, source_url=resolved.source_url)
    except Exception as exc:  # the slot is gone or the source is unreachable: both are wrong
        return dg.AssetCheckEvaluation(
            asset_key=TARGET_TABLES,
            check_name=LAG_CHECK,
            passed=False,
            severity=dg.AssetCheckSeverity.ERROR,
            partition=row.name,
            description=f"the lag could not be measured: {error_text(exc)}",
            metadata={"pipeline": row.name, "error": error_text(exc)},
        )
    return lag_check_result(row.name, lag, settings)


def lag_check(settings: Settings) -> dg.AssetChecksDefinition:
    """``cdc_lag``, partitioned by pipeline; the description names the configured thresholds."""

    @dg.asset_check(
        asset=TARGET_TABLES,
        name=LAG_CHECK,
        partitions_def=PIPELINES,
        description=lag_check_description(settings),
    )
    def cdc_lag_check(
        context: dg.AssetCheckExecutionContext,
        control: ControlDb,
        connections: PostgresConnections,
    ) -> dg.AssetCheckResult:
        """The partition's pipeline only: a backfill of several partitions gives one each."""
        row = control.repository().get(context.partition_key)
        evaluation = evaluate_lag(row, connections, Settings.from_env())
        return dg.AssetCheckResult(
            passed=evaluation.passed,
            severity=evaluation.severity,
            description=evaluation.description,
            metadata=dict(evaluation.metadata),
        )

    return cdc_lag_check


def idle_lag_rows(rows: "list[PipelineRow]") -> "list[PipelineRow]":
    """CDC pipelines with a slot that no batch reports on: disabled, or CDC STOPPED."""
    return [
        r
        for r in rows
        if r.mode is Mode.FULL_LOAD_AND_CDC
        and r.full_load_status is FullLoadStatus.COMPLETED
        and (not r.enabled or r.cdc_status is CdcStatus.STOPPED)
    ]


def idle_lag_sensor() -> Any:
    """``cdc_lag_idle_sensor``: a ``cdc_lag`` check run a minute for each idle CDC pipeline.

    A run, not a runless report: Dagster 1.13 keeps runless evaluations of a partitioned check
    under run id "", and the second one for the same partition violates its unique index. The
    check-only run materializes nothing, so no status writer takes it for a load
    (``tags.pipeline_of_run``).
    """

    @dg.sensor(
        name="cdc_lag_idle_sensor",
        asset_selection=dg.AssetSelection.checks(LAG_KEY),
        minimum_interval_seconds=IDLE_LAG_INTERVAL_S,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Evaluates cdc_lag once a minute for disabled or STOPPED CDC pipelines "
        "(their slot still holds WAL on the source).",
    )
    def cdc_lag_idle_sensor(
        context: dg.SensorEvaluationContext, control: ControlDb
    ) -> dg.SensorResult:
        rows = idle_lag_rows(control.repository().list())
        busy = active_pipelines(context.instance, [r.name for r in rows])
        tick = int(time.time()) // IDLE_LAG_INTERVAL_S
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=f"idle_lag:{r.name}:{tick}",
                    partition_key=r.name,
                    asset_selection=[],
                    asset_check_keys=[LAG_KEY],
                    tags={TAG_CHECK_ONLY: "true"},
                )
                for r in rows
                if r.name not in busy
            ]
        )

    return cdc_lag_idle_sensor
