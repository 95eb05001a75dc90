"""The full load as a partitioned asset: one partition per pipeline, hooks on the asset itself.

Hooks are attached with ``@asset(hooks=...)``, not only on ``full_load_job``: the UI's Materialize
button runs the hidden ``__ASSET_JOB``, which carries no job-level hooks. The asset body is thin:
``engine.full_load`` inside the status bracket (``defs/bracket.py``: lock, IN_PROGRESS, the
outcome as its last act), shared with the CDC op. Everything it writes is also derived from the
run record later by the sensors.
"""

from typing import TYPE_CHECKING, Any

import dagster as dg

from cdc_assets.defs.bracket import status_bracket
from cdc_assets.defs.hooks import record_failure_hook, record_success_hook
from cdc_assets.defs.partitions import PIPELINES
from cdc_assets.defs.resources import ControlDb, PostgresConnections
from cdc_assets.domain import Phase
from cdc_assets.settings import Settings

if TYPE_CHECKING:
    from cdc_assets.engine.full_load import FullLoadResult, TableProgress

TARGET_TABLES = dg.AssetKey("target_tables")


def table_metadata(result: "FullLoadResult") -> dict[str, Any]:
    """Materialization metadata under ``cdc/``: per-table rows, bytes, seconds; run totals.

    ``rows`` is what the COPY command tags reported, ``target_rows`` the live table counted right
    after the swap: the ``row_counts_match`` check of this run compares them.
    """
    meta: dict[str, Any] = {
        "cdc/rows": dg.MetadataValue.int(result.rows),
        "cdc/bytes": dg.MetadataValue.int(result.bytes),
        "cdc/seconds": dg.MetadataValue.float(round(result.seconds, 3)),
        "cdc/consistent_lsn": dg.MetadataValue.text(
            str(result.consistent_lsn) if result.consistent_lsn is not None else ""
        ),
        "cdc/tables": dg.MetadataValue.int(len(result.tables)),
    }
    for t in result.tables:
        key = f"cdc/table/{t.table.display}"
        meta[f"{key}/rows"] = dg.MetadataValue.int(t.rows)
        meta[f"{key}/target_rows"] = dg.MetadataValue.int(t.target_rows)
        meta[f"{key}/bytes"] = dg.MetadataValue.int(t.bytes)
        meta[f"{key}/seconds"] = dg.MetadataValue.float(round(t.seconds, 3))
    return meta


def _progress_logger(context: dg.AssetExecutionContext) -> "Any":
    def log(p: "TableProgress") -> None:
        state = "done" if p.done else "copying"
        context.log.info(
            f"{p.table.display}: {state}, {p.rows} rows, {p.bytes} bytes, {p.seconds:.1f} s"
        )

    return log


def load_pipeline(
    context: dg.AssetExecutionContext, control: ControlDb, connections: PostgresConnections
) -> "FullLoadResult":
    """The engine inside the status bracket: the op's status path, the fastest one."""
    from cdc_assets.engine.full_load import run_full_load

    repo = control.repository()
    with status_bracket(
        context, repo, context.partition_key, Phase.FULL_LOAD, success_message="op completed"
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
    return result


@dg.asset(
    key=TARGET_TABLES,
    partitions_def=PIPELINES,
    hooks={record_success_hook, record_failure_hook},
    group_name="cdc",
    description="The target copies of a pipeline's source tables (one partition per pipeline).",
)
def target_tables(
    context: dg.AssetExecutionContext, control: ControlDb, connections: PostgresConnections
) -> dg.MaterializeResult:  # type: ignore[type-arg]
    """Full load of the partition's pipeline; the row status follows the run.

    Its ``row_counts_match`` check (``defs/checks.py``) runs next in the same run and reads the
    counts recorded here (``cdc/table/<t>/rows`` and ``.../target_rows``).
    """
    result = load_pipeline(context, control, connections)
    return dg.MaterializeResult(metadata=table_metadata(result))
