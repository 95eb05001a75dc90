"""The CDC batch as an op: apply all available changes of the run's pipeline, then exit.

An op (not a second asset) so that the UI's Materialize of a table always means a full load.
The pipeline is the run's ``cdc/pipeline`` tag (one job for every pipeline). Each batch logs a
materialization for every table it changed (per-table inserts, updates, deletes, last LSN) and
every table's ``cdc_lag`` evaluation. Hooks ride on the op itself; statuses go to ``cdc_status``
(ACTIVE after a good batch, FAILED otherwise) and the applied LSN and lag to
``cdc_lsn``/``cdc_lag_bytes``.
"""

from typing import TYPE_CHECKING, Any

import dagster as dg

from cdc_assets.defs.bracket import status_bracket
from cdc_assets.defs.catalog import PipelineAssets
from cdc_assets.defs.hooks import record_failure_hook, record_success_hook
from cdc_assets.defs.resources import ControlDb, PostgresConnections
from cdc_assets.defs.tags import TAG_PIPELINE
from cdc_assets.domain import Mode, Phase
from cdc_assets.errors import ConfigError
from cdc_assets.settings import Settings

if TYPE_CHECKING:
    from cdc_assets.engine.cdc import CdcBatchResult


def table_materializations(
    p: PipelineAssets, result: "CdcBatchResult"
) -> list[dg.AssetMaterialization]:
    """One materialization per table the batch changed (none for the others).

    So "last updated" on a table asset means its data changed; a quiet table stays as it was.
    """
    keys = dict(zip(p.tables, p.target_keys(), strict=True))
    out = []
    for table, (inserts, updates, deletes, truncated) in sorted(result.by_table.items()):
        key = keys.get(table)
        if key is None:
            continue
        metadata: dict[str, Any] = {
            "dagster/table_name": f"{p.target_schema}.{table.name}",
            "cdc/phase": Phase.CDC.value,
            "cdc/inserts": inserts,
            "cdc/updates": updates,
            "cdc/deletes": deletes,
            "cdc/last_lsn": str(result.end_lsn),
        }
        if truncated:
            metadata["cdc/truncated"] = True
        out.append(dg.AssetMaterialization(asset_key=dg.AssetKey(list(key)), metadata=metadata))
    return out


@dg.op(
    name="cdc_sync",
    description="Applies every pending change of the run's pipeline (tag cdc/pipeline).",
)
def cdc_sync(
    context: dg.OpExecutionContext, control: ControlDb, connections: PostgresConnections
) -> dg.Output[int]:  # type: ignore[type-arg]
    """Lock, apply a batch, record progress and ACTIVE; FAILED with the reason on error."""
    from cdc_assets.defs.check_specs import LAG_CHECK
    from cdc_assets.defs.checks import lag_results_for
    from cdc_assets.engine.cdc import run_cdc_batch

    repo = control.repository()
    settings = Settings.from_env()
    pipeline = context.run.tags.get(TAG_PIPELINE)
    if not pipeline:
        raise dg.Failure(
            f"run {context.run_id} has no {TAG_PIPELINE} tag: launch cdc_sync_job with tag "
            f"{TAG_PIPELINE}=NAME (the sensors and `cdc-assets run NAME --phase cdc` do)"
        )
    with status_bracket(
        context, repo, pipeline, Phase.CDC, success_message="op: batch applied"
    ) as run:
        if run.row.mode is not Mode.FULL_LOAD_AND_CDC:
            # Without this, a UI launch for a full_load pipeline fails on its missing slot.
            raise ConfigError(
                f"mode is {run.row.mode.value}: CDC batches apply to full_load_and_cdc pipelines",
                pipeline=pipeline,
                fix="set the mode to full_load_and_cdc and run a new full load",
            )
        resolved = connections.resolved(run.row.spec)
        result = run_cdc_batch(
            resolved.spec,
            source_url=resolved.source_url,
            target_url=resolved.target_url,
            settings=settings,
            progress=context.log.info,
        )
        # Written by the bracket once the body is done, before ACTIVE; never failing the run:
        # the next batch records the progress again.
        run.after_success.append(
            lambda: repo.record_cdc_progress(
                pipeline, run_id=run.ident.run_id, lsn=result.end_lsn, lag_bytes=result.lag_bytes
            )
        )
    for warning in result.warnings:
        context.log.warning(warning)
    metadata: dict[str, Any] = {
        "cdc/changes": result.changes,
        "cdc/transactions": result.transactions,
        "cdc/end_lsn": str(result.end_lsn),
        "cdc/lag_bytes": result.lag_bytes,
        "cdc/seconds": round(result.seconds, 3),
    }
    if result.warnings:
        metadata["cdc/warnings"] = "\n".join(result.warnings)
    if result.enum_labels_added:  # added on the target before the rows carrying them
        metadata["cdc/enum_labels_added"] = "\n".join(result.enum_labels_added)
    p = PipelineAssets.of_row(run.row)
    for materialization in table_materializations(p, result):
        context.log_event(materialization)
    evaluations = lag_results_for(p, result.lag_bytes, settings)
    for evaluation in evaluations:
        # The stub omits the type; the runtime accepts it (test_defs_cdc.py reads it back).
        context.log_event(evaluation)  # type: ignore[arg-type]
    passed = all(e.passed for e in evaluations)
    context.log.info(f"lag {result.lag_bytes} bytes: {LAG_CHECK} passed={passed}")
    return dg.Output(result.changes, metadata=metadata)


cdc_sync_hooked = cdc_sync.with_hooks({record_success_hook, record_failure_hook})
