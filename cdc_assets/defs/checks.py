"""The checks of every table asset: ``row_counts_match`` and ``cdc_lag``, one result per table.

``row_counts_match`` is declared on the pipeline's full-load multi-asset (``defs/full_load.py``)
and evaluated in every full-load run right after the load; executed on its own it counts now (see
``ROW_COUNTS_DESCRIPTION`` there for what it compares).

``cdc_lag`` exists for tables of CDC pipelines, declared on the same multi-asset. The lag is the
pipeline's (one replication slot for all its tables), so every table of a pipeline gets the same
verdict, each under its own asset. Three evaluators, one meaning (source WAL after the slot's
confirmed position): each CDC batch logs its pipeline's evaluations; running the check by hand
measures the slot now; ``cdc_lag_idle_sensor`` measures the slots of CDC pipelines that get no
batches (disabled or STOPPED): their slot still holds WAL, which is exactly what the check exists
to show.
"""

import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import dagster as dg

from cdc_assets.defs.active import active_pipelines
from cdc_assets.defs.catalog import Catalog, PipelineAssets
from cdc_assets.defs.check_specs import LAG_CHECK, ROW_COUNTS_CHECK, lag_keys
from cdc_assets.defs.resources import ControlDb, PostgresConnections
from cdc_assets.defs.run_status import error_text
from cdc_assets.defs.tags import TAG_CHECK_ONLY
from cdc_assets.domain import CdcStatus, FullLoadStatus, Mode, TableRef
from cdc_assets.errors import ConcurrentRunError
from cdc_assets.settings import Settings
from cdc_assets.status.rules import LagVerdict, has_slot, lag_verdict

if TYPE_CHECKING:
    from cdc_assets.control.repository import PipelineRow
    from cdc_assets.engine.full_load import FullLoadResult


def _key(parts: Sequence[str]) -> dg.AssetKey:
    return dg.AssetKey(list(parts))


def lag_result_description(pipeline: str, lag_bytes: int, settings: Settings) -> str:
    """One evaluation's text: the lag and the thresholds it was judged by."""
    return (
        f"pipeline {pipeline!r}: {lag_bytes} bytes of source WAL not yet applied; WARN above "
        f"{settings.lag_warn_bytes} (CDC_LAG_WARN_BYTES), ERROR above {settings.lag_fail_bytes} "
        "(CDC_LAG_FAIL_BYTES)"
    )


def lag_evaluations(
    p: PipelineAssets,
    *,
    passed: bool,
    severity: dg.AssetCheckSeverity,
    description: str,
    metadata: dict[str, Any],
    only: "set[dg.AssetCheckKey] | None" = None,
) -> list[dg.AssetCheckEvaluation]:
    """The same verdict for every table of ``p`` (or the ``only`` ones)."""
    return [
        dg.AssetCheckEvaluation(
            asset_key=key.asset_key,
            check_name=LAG_CHECK,
            passed=passed,
            severity=severity,
            description=description,
            metadata=metadata,
        )
        for key in lag_keys(p)
        if only is None or key in only
    ]


def lag_results_for(
    p: PipelineAssets, lag_bytes: int, settings: Settings
) -> list[dg.AssetCheckEvaluation]:
    """A measured lag as every table's ``cdc_lag`` evaluation."""
    verdict = lag_verdict(
        lag_bytes, warn_bytes=settings.lag_warn_bytes, fail_bytes=settings.lag_fail_bytes
    )
    severity = (
        dg.AssetCheckSeverity.ERROR if verdict is LagVerdict.ERROR else dg.AssetCheckSeverity.WARN
    )
    return lag_evaluations(
        p,
        passed=verdict.passed,
        severity=severity,
        description=lag_result_description(p.name, lag_bytes, settings),
        metadata={"cdc/pipeline": p.name, "cdc/lag_bytes": lag_bytes},
    )


def evaluate_lag(
    p: PipelineAssets, row: "PipelineRow", connections: PostgresConnections, settings: Settings
) -> list[dg.AssetCheckEvaluation]:
    """Measure ``row``'s slot now; a missing slot after a completed load fails with the fix."""
    from cdc_assets.engine.cdc import slot_lag_bytes

    if not has_slot(row):
        return lag_evaluations(
            p,
            passed=True,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"pipeline {row.name!r}: no replication slot yet (mode "
            f"{row.mode.value}, full load {row.full_load_status.value}), nothing held on the "
            "source",
            metadata={"cdc/pipeline": row.name},
        )
    try:
        resolved = connections.resolved(row.spec)
        lag = slot_lag_bytes(row.spec, source_url=resolved.source_url)
    except Exception as exc:  # the slot is gone or the source is unreachable: both are wrong
        return lag_evaluations(
            p,
            passed=False,
            severity=dg.AssetCheckSeverity.ERROR,
            description=f"the lag could not be measured: {error_text(exc)}",
            metadata={"cdc/pipeline": row.name, "error": error_text(exc)},
        )
    return lag_results_for(p, lag, settings)


def _as_result(e: dg.AssetCheckEvaluation) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=e.asset_key,
        check_name=e.check_name,
        passed=e.passed,
        severity=e.severity,
        description=e.description,
        metadata=dict(e.metadata),
    )


def lag_now(
    p: PipelineAssets,
    control: ControlDb,
    connections: PostgresConnections,
    checks: set[dg.AssetCheckKey],
) -> Iterator[dg.AssetCheckResult]:
    """``cdc_lag`` of the selected tables, measured now (by hand, or the idle-lag sensor)."""
    selected = {k for k in checks if k.name == LAG_CHECK}
    if not selected:
        return
    try:
        row = control.repository().get(p.name)
        evaluations = evaluate_lag(p, row, connections, Settings.from_env())
    except Exception as exc:  # a check that cannot measure warns; it never fails a load
        evaluations = lag_evaluations(
            p,
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"the lag could not be measured: {error_text(exc)}",
            metadata={"cdc/pipeline": p.name, "error": error_text(exc)},
        )
    for e in evaluations:
        if dg.AssetCheckKey(e.asset_key, LAG_CHECK) in selected:
            yield _as_result(e)


def idle_lag_rows(rows: "list[PipelineRow]") -> "list[PipelineRow]":
    """CDC pipelines with a slot that no batch reports on: disabled, or CDC STOPPED."""
    return [r for r in rows if has_slot(r) and (not r.enabled or r.cdc_status is CdcStatus.STOPPED)]


def idle_lag_sensor(settings: Settings, catalog: Catalog) -> Any:
    """``cdc_lag_idle_sensor``: a ``cdc_lag`` check run for each idle CDC pipeline.

    Every ``CDC_IDLE_LAG_INTERVAL_S`` (default 10 minutes): each evaluation is a short run, so
    this bounds what an idle pipeline adds to Dagster's storage (144 runs a day at the default),
    while a slot that grows is still seen within minutes. The check-only run materializes
    nothing, so no status writer takes it for a load (``tags.pipeline_of_run``).
    """
    by_name = {p.name: p for p in catalog.pipelines if p.wants_cdc}

    @dg.sensor(
        name="cdc_lag_idle_sensor",
        asset_selection=dg.AssetSelection.checks(
            *(k for p in by_name.values() for k in lag_keys(p))
        ),
        minimum_interval_seconds=settings.idle_lag_interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Evaluates cdc_lag every {settings.idle_lag_interval_s} s for disabled or "
        "STOPPED CDC pipelines (their slot still holds WAL on the source).",
    )
    def cdc_lag_idle_sensor(
        context: dg.SensorEvaluationContext, control: ControlDb
    ) -> dg.SensorResult:
        rows = [r for r in idle_lag_rows(control.repository().list()) if r.name in by_name]
        busy = active_pipelines(context.instance, [r.name for r in rows])
        tick = int(time.time()) // settings.idle_lag_interval_s
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=f"idle_lag:{r.name}:{tick}",
                    asset_selection=[],
                    asset_check_keys=lag_keys(by_name[r.name]),
                    # No cdc/pipeline tag: the reconciler's newest-runs-per-pipeline window
                    # must hold the pipeline's loads and batches, not 144 check runs a day.
                    tags={TAG_CHECK_ONLY: "true", "cdc/check_of": r.name},
                )
                for r in rows
                if r.name not in busy
            ]
        )

    return cdc_lag_idle_sensor


# -- row_counts_match -------------------------------------------------------------------------


def _count_result(
    key: dg.AssetKey,
    passed: bool,
    description: str,
    metadata: dict[str, Any],
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=ROW_COUNTS_CHECK,
        passed=passed,
        severity=severity,
        description=description,
        metadata=metadata,
    )


def _table_keys(p: PipelineAssets) -> dict[TableRef, dg.AssetKey]:
    return {t: _key(k) for t, k in zip(p.tables, p.target_keys(), strict=True)}


def _selected(p: PipelineAssets, checks: set[dg.AssetCheckKey]) -> dict[TableRef, dg.AssetKey]:
    return {
        t: k for t, k in _table_keys(p).items() if dg.AssetCheckKey(k, ROW_COUNTS_CHECK) in checks
    }


def _compare_one(
    key: dg.AssetKey,
    table: TableRef,
    expected: int | None,
    actual: int | None,
    against: str,
    *,
    what: str = "copied",
) -> dg.AssetCheckResult:
    """``what`` names the expected count in metadata: ``copied`` (a load's) or ``source``."""
    metadata: dict[str, Any] = {
        what: _or_minus_one(expected),
        "target": _or_minus_one(actual),
        "compared": True,
    }
    if expected == actual:
        text = f"{table.display}: the target holds the {actual} rows of {against}"
        return _count_result(key, True, text, metadata)
    text = (
        f"{table.display}: the target holds {_shown(actual)} rows, {against} has {_shown(expected)}"
    )
    return _count_result(key, False, text, metadata)


def _shown(value: int | None) -> str:
    return "no table" if value is None else str(value)


def _or_minus_one(value: int | None) -> int:
    return value if value is not None else -1


def row_count_results(
    p: PipelineAssets, result: "FullLoadResult", checks: set[dg.AssetCheckKey]
) -> Iterator[dg.AssetCheckResult]:
    """In the load's own run: each table's COPY tags, source against target (exact)."""
    by_table = {t.table: t for t in result.tables}
    for table, key in _selected(p, checks).items():
        loaded = by_table.get(table)
        yield _compare_one(
            key,
            table,
            loaded.rows if loaded else None,
            loaded.target_rows if loaded else None,
            "the load's COPY",
        )


def row_counts_now(
    context: dg.AssetExecutionContext,
    p: PipelineAssets,
    control: ControlDb,
    connections: PostgresConnections,
    checks: set[dg.AssetCheckKey],
) -> Iterator[dg.AssetCheckResult]:
    """``row_counts_match`` executed on its own; never raises (a count it cannot take is a WARN)."""
    selected = _selected(p, checks)
    try:
        yield from _row_counts_now(context, p, control, connections, selected)
    except Exception as exc:
        for key in selected.values():
            yield _count_result(
                key,
                False,
                f"the rows could not be counted: {error_text(exc)}",
                {"error": error_text(exc)},
                severity=dg.AssetCheckSeverity.WARN,
            )


def _last_copied(instance: dg.DagsterInstance, key: dg.AssetKey) -> int | None:
    """``cdc/rows`` of the table's newest full-load materialization, if any."""
    result = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key), limit=20)
    for record in result.records:
        mat = record.asset_materialization
        if mat is None:
            continue
        phase = mat.metadata.get("cdc/phase")
        rows = mat.metadata.get("cdc/rows")
        if phase is not None and phase.value == "full_load" and rows is not None:
            return int(rows.value)  # type: ignore[arg-type]
    return None


def _row_counts_now(
    context: dg.AssetExecutionContext,
    p: PipelineAssets,
    control: ControlDb,
    connections: PostgresConnections,
    selected: dict[TableRef, dg.AssetKey],
) -> Iterator[dg.AssetCheckResult]:
    from cdc_assets.engine.row_counts import caught_up_counts, count_tables
    from cdc_assets.pg.connect import connect

    repo = control.repository()
    row = repo.get(p.name)
    if row.full_load_status is not FullLoadStatus.COMPLETED:
        for key in selected.values():
            yield _count_result(
                key, True, "no completed full load of this pipeline: nothing to compare", {}
            )
        return
    resolved = connections.resolved(row.spec)
    tables = tuple(selected)
    if row.mode is Mode.FULL_LOAD:
        with connect(resolved.target_url, pipeline=row.name, role="target", autocommit=True) as c:
            now = count_tables(c, tables, row.spec.target_schema)
        for table, key in selected.items():
            yield _compare_one(
                key,
                table,
                _last_copied(context.instance, key),
                now.get(table),
                "its last full load",
            )
        return
    try:
        with repo.pipeline_lock(row.name):
            counts = caught_up_counts(
                row.spec, source_url=resolved.source_url, target_url=resolved.target_url
            )
    except ConcurrentRunError:
        # The stream run holds the lock while it applies: counting now could catch it mid-way.
        for key in selected.values():
            yield _count_result(
                key,
                True,
                "not compared: the pipeline's CDC stream is applying changes (the counts are "
                "compared by hand while CDC is stopped: disable the pipeline, then execute the "
                "check)",
                {"compared": False},
                severity=dg.AssetCheckSeverity.WARN,
            )
        return
    for table, key in selected.items():
        if counts is None:
            yield _count_result(
                key,
                True,
                "not compared: the source has changes CDC has not applied yet (execute the check "
                "again after a batch, when the source is quiet)",
                {"compared": False},
                severity=dg.AssetCheckSeverity.WARN,
            )
            continue
        yield _compare_one(
            key,
            table,
            counts.source.get(table),
            counts.target.get(table),
            "the source (one snapshot)",
            what="source",
        )
