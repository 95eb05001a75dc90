"""The asset checks of ``target_tables``, both partitioned like it (one result per pipeline).

``row_counts_match`` runs in every full-load run after the load, and can be executed again by
hand (see ``ROW_COUNTS_DESCRIPTION`` for what it compares then).

``cdc_lag`` is partitioned like its asset (one partition per pipeline), so every pipeline has its
own result in the UI. Three evaluators, one meaning (source WAL after the slot's confirmed
position): each CDC batch reports its pipeline's lag; running the check by hand measures the
partition's slot now; ``cdc_lag_idle_sensor`` measures the slots of CDC pipelines that get no
batches (disabled or STOPPED): their slot still holds WAL, which is exactly what the check exists
to show.
"""

import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import dagster as dg

from cdc_assets.defs.cdc import LAG_CHECK, lag_check_result
from cdc_assets.defs.full_load import TARGET_TABLES
from cdc_assets.defs.partitions import PIPELINES
from cdc_assets.defs.resources import ControlDb, PostgresConnections
from cdc_assets.defs.run_status import error_text
from cdc_assets.defs.sensors import active_pipelines
from cdc_assets.defs.tags import TAG_CHECK_ONLY
from cdc_assets.domain import CdcStatus, Mode
from cdc_assets.settings import Settings
from cdc_assets.status.rules import has_slot

if TYPE_CHECKING:
    from cdc_assets.control.repository import PipelineRepository, PipelineRow
    from cdc_assets.domain import TableRef

LAG_KEY = dg.AssetCheckKey(TARGET_TABLES, LAG_CHECK)


@contextmanager
def partitioned_check() -> Iterator[None]:
    """Silence the one PreviewWarning of partitioned checks (1.13), a choice made on purpose.

    Partitions are what gives every pipeline its own result; the warning would otherwise greet
    every code-server start and run worker in the logs.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*partitions_def on an AssetCheckSpec.*", category=dg.PreviewWarning
        )
        yield


def lag_check_description(settings: Settings) -> str:
    """The check's description: what it measures and the thresholds (never plotted metadata)."""
    return (
        "CDC lag of the partition's pipeline: bytes of source WAL written after its replication "
        "slot's confirmed position (what the slot still holds on the source). Passes up to "
        f"CDC_LAG_WARN_BYTES ({settings.lag_warn_bytes}); WARN above it, ERROR above "
        f"CDC_LAG_FAIL_BYTES ({settings.lag_fail_bytes}). Reported by each CDC batch, every "
        f"{settings.idle_lag_interval_s} s (CDC_IDLE_LAG_INTERVAL_S) for disabled or STOPPED "
        "pipelines, and measured now when executed by hand. A "
        "full_load pipeline, or one whose first full load has not completed, has no slot and "
        "passes."
    )


def evaluate_lag(
    row: "PipelineRow", connections: PostgresConnections, settings: Settings
) -> dg.AssetCheckEvaluation:
    """Measure ``row``'s slot now; a missing slot after a completed load fails with the fix."""
    from cdc_assets.engine.cdc import slot_lag_bytes

    if not has_slot(row):
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
    with partitioned_check():
        decorate = dg.asset_check(
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

    with partitioned_check():
        return decorate(cdc_lag_check)


def idle_lag_rows(rows: "list[PipelineRow]") -> "list[PipelineRow]":
    """CDC pipelines with a slot that no batch reports on: disabled, or CDC STOPPED."""
    return [r for r in rows if has_slot(r) and (not r.enabled or r.cdc_status is CdcStatus.STOPPED)]


def idle_lag_sensor(settings: Settings) -> Any:
    """``cdc_lag_idle_sensor``: a ``cdc_lag`` check run for each idle CDC pipeline.

    Every ``CDC_IDLE_LAG_INTERVAL_S`` (default 10 minutes): each evaluation is a short run, so
    this bounds what an idle pipeline adds to Dagster's storage (144 runs a day at the default),
    while a slot that grows is still seen within minutes.

    A run, not a runless report: Dagster 1.13 keeps runless evaluations of a partitioned check
    under run id "", and the second one for the same partition violates its unique index. The
    check-only run materializes nothing, so no status writer takes it for a load
    (``tags.pipeline_of_run``).
    """

    @dg.sensor(
        name="cdc_lag_idle_sensor",
        asset_selection=dg.AssetSelection.checks(LAG_KEY),
        minimum_interval_seconds=settings.idle_lag_interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Evaluates cdc_lag every {settings.idle_lag_interval_s} s for disabled or "
        "STOPPED CDC pipelines (their slot still holds WAL on the source).",
    )
    def cdc_lag_idle_sensor(
        context: dg.SensorEvaluationContext, control: ControlDb
    ) -> dg.SensorResult:
        rows = idle_lag_rows(control.repository().list())
        busy = active_pipelines(context.instance, [r.name for r in rows])
        tick = int(time.time()) // settings.idle_lag_interval_s
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


ROW_COUNTS_CHECK = "row_counts_match"
ROW_COUNTS_KEY = dg.AssetCheckKey(TARGET_TABLES, ROW_COUNTS_CHECK)

ROW_COUNTS_DESCRIPTION = (
    "Every target table holds exactly the rows its full load copied. In the load's run: the "
    "rows the source's COPY command tags reported for each table against what the swapped-in "
    "table holds (the target's COPY tags). Executed again later: a full_load pipeline's tables "
    "against the rows its last full load copied (only a load writes them); a full_load_and_cdc "
    "pipeline's tables against the source counted in one snapshot, compared only while CDC has "
    "applied every change (no pending change before and after counting, pipeline lock held), "
    "otherwise reported as not compared. Fails (ERROR) only on a real difference; a count that "
    "cannot be taken is a WARN."
)


def _last_load(instance: dg.DagsterInstance, pipeline: str) -> Any:
    """The newest materialization of the pipeline's partition (its last full load), or None."""
    result = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=TARGET_TABLES, asset_partitions=[pipeline]), limit=1
    )
    return result.records[0] if result.records else None


def _row_counts_result(
    passed: bool,
    description: str,
    metadata: dict[str, Any],
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=passed, severity=severity, description=description, metadata=metadata
    )


def _compare(
    tables: "tuple[TableRef, ...]",
    expected: "dict[TableRef, int | None]",
    actual: "dict[TableRef, int | None]",
    *,
    what: str,
    against: str,
) -> dg.AssetCheckResult:
    """One result for all tables; metadata ``<table>/<what>`` and ``<table>/target`` per table."""
    mismatched = [t.display for t in tables if expected.get(t) != actual.get(t)]
    metadata: dict[str, Any] = {"mismatched": ", ".join(mismatched) or "none", "compared": True}
    for t in tables:
        metadata[f"{t.display}/{what}"] = _or_minus_one(expected.get(t))
        metadata[f"{t.display}/target"] = _or_minus_one(actual.get(t))
    if mismatched:
        text = f"target rows differ from {against} in: {', '.join(mismatched)}"
    else:
        text = f"every target table holds the rows of {against}"
    return _row_counts_result(not mismatched, text, metadata)


def _or_minus_one(value: int | None) -> int:
    return value if value is not None else -1


def evaluate_row_counts(
    context: dg.AssetCheckExecutionContext,
    row: "PipelineRow",
    connections: PostgresConnections,
    repo: "PipelineRepository",
) -> dg.AssetCheckResult:
    """``row_counts_match`` for one pipeline, as its description says."""
    from cdc_assets.engine.row_counts import caught_up_counts, count_tables
    from cdc_assets.pg.connect import connect

    tables = row.spec.tables
    record = _last_load(context.instance, row.name)
    mat = record.asset_materialization if record is not None else None
    if mat is None:
        return _row_counts_result(
            True, "no full load of this pipeline yet: nothing to compare", {"compared": False}
        )
    meta = mat.metadata
    copied: dict[TableRef, int | None] = {}
    at_swap: dict[TableRef, int | None] = {}
    for t in tables:
        rows, target = (
            meta.get(f"cdc/table/{t.display}/rows"),
            meta.get(f"cdc/table/{t.display}/target_rows"),
        )
        copied[t] = int(rows.value) if rows is not None else None  # type: ignore[arg-type]
        at_swap[t] = int(target.value) if target is not None else None  # type: ignore[arg-type]
    if record.run_id == context.run.run_id:  # in the load's own run: exact, nothing else ran
        return _compare(tables, copied, at_swap, what="copied", against="the load's COPY")
    resolved = connections.resolved(row.spec)
    if row.mode is Mode.FULL_LOAD:
        with connect(resolved.target_url, pipeline=row.name, role="target", autocommit=True) as c:
            now = count_tables(c, tables, row.spec.target_schema)
        return _compare(
            tables, copied, now, what="copied", against=f"the last full load (run {record.run_id})"
        )
    with repo.pipeline_lock(row.name):
        counts = caught_up_counts(
            row.spec, source_url=resolved.source_url, target_url=resolved.target_url
        )
    if counts is None:
        return _row_counts_result(
            True,
            "not compared: the source has changes CDC has not applied yet (execute the check "
            "again after a batch, when the source is quiet)",
            {"compared": False},
            severity=dg.AssetCheckSeverity.WARN,
        )
    return _compare(
        tables, counts.source, counts.target, what="source", against="the source (one snapshot)"
    )


def row_counts_check() -> dg.AssetChecksDefinition:
    """``row_counts_match``, partitioned by pipeline; part of every full-load run."""

    def row_counts_match(
        context: dg.AssetCheckExecutionContext,
        control: ControlDb,
        connections: PostgresConnections,
    ) -> dg.AssetCheckResult:
        """Never raises: a check that cannot count reports WARN and leaves the run alone."""
        try:
            repo = control.repository()
            return evaluate_row_counts(context, repo.get(context.partition_key), connections, repo)
        except Exception as exc:
            return _row_counts_result(
                False,
                f"the rows could not be counted: {error_text(exc)}",
                {"error": error_text(exc)},
                severity=dg.AssetCheckSeverity.WARN,
            )

    with partitioned_check():
        return dg.asset_check(
            asset=TARGET_TABLES,
            name=ROW_COUNTS_CHECK,
            partitions_def=PIPELINES,
            description=ROW_COUNTS_DESCRIPTION,
        )(row_counts_match)
