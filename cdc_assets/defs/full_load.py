"""A pipeline's full load as one multi-asset: one asset per target table, sources upstream.

The multi-asset also carries every table's checks (``defs/check_specs.py``), so one pipeline is
one op in the code location.

Built per pipeline from the :class:`~cdc_assets.defs.catalog.PipelineAssets` the code location
loaded. Each target table is an ``AssetSpec`` keyed by ``asset_keys.table_key`` whose ``deps``
is its source table, declared as an external ``AssetSpec`` (no materialization function: the
source is written by the application), so the lineage graph shows source -> target per table.
One group per pipeline, kind ``postgres``.

A full load copies every table of the pipeline from one snapshot, so selecting a subset of its
tables (the UI allows it: ``can_subset``) still loads all of them, and says so in the run's log;
the unselected tables get their materialization as a logged event, so "last updated" stays true
for every table. Hooks ride on the op itself: the UI's Materialize runs the hidden
``__ASSET_JOB``, which carries no job-level hooks. The body is the status bracket around
``engine.full_load`` (``defs/bracket.py``), shared with the CDC op.
"""

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import dagster as dg

from cdc_assets.defs.bracket import status_bracket
from cdc_assets.defs.catalog import PipelineAssets
from cdc_assets.defs.check_specs import LAG_CHECK, check_specs
from cdc_assets.defs.hooks import record_failure_hook, record_success_hook
from cdc_assets.defs.resources import ControlDb, PostgresConnections
from cdc_assets.domain import Phase, TableRef
from cdc_assets.settings import Settings

if TYPE_CHECKING:
    from cdc_assets.engine.full_load import FullLoadResult, TableProgress, TableResult
    from cdc_assets.source.columns import Column

KIND = "postgres"


def op_name(pipeline: str) -> str:
    """The multi-asset's op name; pipeline names are already valid Dagster names."""
    return f"full_load__{pipeline}"


def source_specs(p: PipelineAssets) -> list[dg.AssetSpec]:
    """The source tables, external: shown upstream, never materialized by Dagster."""
    return [
        dg.AssetSpec(
            key=dg.AssetKey(list(key)),
            group_name=p.name,
            kinds={KIND},
            description=f"Source table {t.display} of pipeline {p.name!r} (written by its "
            "application; replicated, never materialized, by Dagster).",
            metadata={"dagster/table_name": f"{t.schema}.{t.name}", "cdc/pipeline": p.name},
        )
        for t, key in zip(p.tables, p.source_keys(), strict=True)
    ]


def target_specs(p: PipelineAssets) -> list[dg.AssetSpec]:
    """The target copies, each downstream of its source table."""
    return [
        dg.AssetSpec(
            key=dg.AssetKey(list(key)),
            deps=[dg.AssetKey(list(src))],
            group_name=p.name,
            kinds={KIND},
            description=f"Copy of source table {t.display} in target table "
            f"{TableRef(p.target_schema, t.name).display}, kept by pipeline {p.name!r} "
            f"({p.mode.value}).",
            metadata={
                "dagster/table_name": f"{p.target_schema}.{t.name}",
                "cdc/pipeline": p.name,
                "cdc/source_table": t.display,
            },
        )
        for t, key, src in zip(p.tables, p.target_keys(), p.source_keys(), strict=True)
    ]


def column_schema(columns: "list[Column]") -> dg.TableSchema:
    """``dagster/column_schema``: names, source type names, nullability, comments."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=c.name,
                type=c.type,
                description=c.description,
                constraints=dg.TableColumnConstraints(nullable=not c.not_null),
            )
            for c in columns
        ]
    )


def table_metadata(
    p: PipelineAssets, t: "TableResult", result: "FullLoadResult", columns: "list[Column] | None"
) -> dict[str, Any]:
    """A table's materialization: the standard keys catalogs read, the rest under ``cdc/``.

    ``cdc/rows`` is what the COPY command tags reported, ``cdc/target_rows`` the live table
    right after the swap: the table's ``row_counts_match`` check compares them.
    """
    meta: dict[str, Any] = {
        "dagster/table_name": f"{p.target_schema}.{t.table.name}",
        "dagster/row_count": dg.MetadataValue.int(t.target_rows),
        "cdc/phase": Phase.FULL_LOAD.value,
        "cdc/rows": dg.MetadataValue.int(t.rows),
        "cdc/target_rows": dg.MetadataValue.int(t.target_rows),
        "cdc/bytes": dg.MetadataValue.int(t.bytes),
        "cdc/seconds": dg.MetadataValue.float(round(t.seconds, 3)),
        "cdc/consistent_lsn": str(result.consistent_lsn or ""),
    }
    if columns:
        meta["dagster/column_schema"] = column_schema(columns)
    return meta


def _progress_logger(context: dg.AssetExecutionContext) -> "Any":
    def log(p: "TableProgress") -> None:
        state = "done" if p.done else "copying"
        context.log.info(
            f"{p.table.display}: {state}, {p.rows} rows, {p.bytes} bytes, {p.seconds:.1f} s"
        )

    return log


def load_pipeline(
    context: dg.AssetExecutionContext,
    pipeline: str,
    control: ControlDb,
    connections: PostgresConnections,
) -> "tuple[FullLoadResult, dict[TableRef, list[Column]]]":
    """The engine inside the status bracket (the op's status path, the fastest one)."""
    from cdc_assets.engine.full_load import run_full_load

    repo = control.repository()
    with status_bracket(
        context, repo, pipeline, Phase.FULL_LOAD, success_message="op completed"
    ) as run:
        resolved = connections.resolved(run.row.spec)
        result = run_full_load(
            resolved.spec,
            source_url=resolved.source_url,
            target_url=resolved.target_url,
            settings=Settings.from_env(),
            progress=_progress_logger(context),
        )
        for warning in result.warnings:
            context.log.warning(warning)
        run.rows = result.rows
    return result, _columns(context, resolved.source_url, pipeline, resolved.spec.tables)


def _columns(
    context: dg.AssetExecutionContext, source_url: str, pipeline: str, tables: tuple[TableRef, ...]
) -> "dict[TableRef, list[Column]]":
    """The source columns, best effort: the load is committed, metadata must not fail it."""
    from cdc_assets.defs.run_status import error_text
    from cdc_assets.pg.connect import connect
    from cdc_assets.source.columns import table_columns

    try:
        with connect(source_url, pipeline=pipeline, role="source", autocommit=True) as conn:
            return table_columns(conn, tables)
    except Exception as exc:
        context.log.warning(f"column schema not recorded: {error_text(exc)}")
        return {}


def full_load_asset(p: PipelineAssets) -> dg.AssetsDefinition:
    """The pipeline's multi-asset: its tables, their row-count checks, the full load as body."""

    @dg.multi_asset(
        name=op_name(p.name),
        specs=target_specs(p),
        check_specs=check_specs(p),
        can_subset=True,
        hooks={record_success_hook, record_failure_hook},
        op_tags={"cdc/pipeline": p.name},
        description=f"Full load of pipeline {p.name!r}: every table from one source snapshot.",
    )
    def _full_load(
        context: dg.AssetExecutionContext, control: ControlDb, connections: PostgresConnections
    ) -> Iterator[Any]:
        from cdc_assets.defs.checks import lag_now, row_count_results, row_counts_now

        keys = {dg.AssetKey(list(k)): t for k, t in zip(p.target_keys(), p.tables, strict=True)}
        selected = set(context.selected_asset_keys)
        checks = set(context.selected_asset_check_keys)
        if not selected:
            # Only checks were selected ("Execute check", the idle-lag sensor): evaluate them
            # now, leave the row alone.
            yield from row_counts_now(context, p, control, connections, checks)
            yield from lag_now(p, control, connections, checks)
            return
        if selected != set(keys):
            context.log.info(
                f"{len(selected)} of {len(keys)} tables of pipeline {p.name!r} selected: a full "
                "load copies every table of the pipeline from one snapshot, so all of them are "
                "loaded (and recorded)."
            )
        result, columns = load_pipeline(context, p.name, control, connections)
        by_table = {t.table: t for t in result.tables}
        for key, table in keys.items():
            loaded = by_table.get(table)
            if loaded is None:
                continue
            meta = table_metadata(p, loaded, result, columns.get(table))
            if key in selected:
                yield dg.MaterializeResult(asset_key=key, metadata=meta)
            else:
                context.log_event(dg.AssetMaterialization(asset_key=key, metadata=meta))
        yield from row_count_results(p, result, checks)
        if any(k.name == LAG_CHECK for k in checks):  # a UI Materialize selects them too
            yield from lag_now(p, control, connections, checks)

    return _full_load
