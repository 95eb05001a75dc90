"""The full load as a partitioned asset: one partition per pipeline, hooks on the asset itself.

Hooks are attached with ``@asset(hooks=...)``, not only on ``full_load_job``: the UI's Materialize
button runs the hidden ``__ASSET_JOB``, which carries no job-level hooks. The asset body is thin:
take the pipeline lock, write IN_PROGRESS, run ``engine.full_load``, write the outcome as its last
act. Everything it writes is also derived from the run record later by the sensors.
"""

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

import dagster as dg

from cdc_assets.defs.hooks import record_failure_hook, record_success_hook
from cdc_assets.defs.partitions import PIPELINES
from cdc_assets.defs.resources import ControlDb, PostgresConnections
from cdc_assets.defs.run_status import (
    RunIdentity,
    apply_write,
    error_text,
    identify,
    pipeline_failure,
    write_for,
)
from cdc_assets.defs.tags import TAG_LOCK_CONFLICT
from cdc_assets.domain import FullLoadStatus, Phase, Writer
from cdc_assets.errors import ConcurrentRunError, ConnectError
from cdc_assets.settings import Settings

if TYPE_CHECKING:
    from cdc_assets.control.repository import PipelineRepository
    from cdc_assets.engine.full_load import FullLoadResult, TableProgress

TARGET_TABLES = dg.AssetKey("target_tables")


@contextmanager
def pipeline_run(
    context: dg.AssetExecutionContext | dg.OpExecutionContext,
    repo: "PipelineRepository",
    pipeline: str,
    phase: Phase,
) -> Iterator[RunIdentity]:
    """Hold the pipeline lock for the run's body; a lock loser tags itself and fails untouched.

    The tag ``cdc/lock_conflict=true`` tells sensors and the reconciler to ignore this run: it is a
    duplicate launch, and the row belongs to the run that holds the lock.
    """
    ident = identify(context.instance, context.run_id)
    if ident is None or ident.pipeline != pipeline:
        raise dg.Failure(f"run {context.run_id} does not name pipeline {pipeline!r} in its tags")
    ident = RunIdentity(pipeline, phase, ident.run_id, ident.created_at)
    with ExitStack() as stack:
        try:
            stack.enter_context(repo.pipeline_lock(pipeline))
        except ConcurrentRunError as exc:
            context.instance.add_run_tags(context.run_id, {TAG_LOCK_CONFLICT: "true"})
            context.log.error(f"pipeline {pipeline!r}: another run holds the lock; row left alone")
            raise pipeline_failure(exc) from exc
        yield ident


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
    """Lock, IN_PROGRESS, engine, COMPLETED/FAILED: the op's status path, the fastest one."""
    from cdc_assets.engine.full_load import run_full_load

    repo = control.repository()
    pipeline = context.partition_key
    with pipeline_run(context, repo, pipeline, Phase.FULL_LOAD) as ident:
        apply_write(
            repo, write_for(ident, FullLoadStatus.IN_PROGRESS, message="op started"), Writer.OP
        )
        try:
            resolved = connections.resolved(repo.get(pipeline).spec)
            result = run_full_load(
                resolved.spec,
                source_url=resolved.source_url,
                target_url=resolved.target_url,
                settings=Settings.from_env(),
                progress=_progress_logger(context),
            )
        except Exception as exc:
            apply_write(
                repo,
                write_for(ident, FullLoadStatus.FAILED, error=error_text(exc), message="op failed"),
                Writer.OP,
            )
            raise pipeline_failure(exc) from exc
        for warning in result.warnings:
            context.log.warning(warning)
        write_after_success(
            context,
            lambda: apply_write(
                repo,
                write_for(ident, FullLoadStatus.COMPLETED, message="op completed"),
                Writer.OP,
                rows=result.rows,
            ),
        )
    return result


def write_after_success(
    context: dg.AssetExecutionContext | dg.OpExecutionContext, write: Callable[[], object]
) -> None:
    """The op's status write after the data is committed: best effort, never failing the run.

    The repository already retried with backoff; if the control DB is still unreachable, failing
    the run would throw away a committed load (FAILED, reset, reload). The run ends SUCCESS
    instead and the success sensor or the reconciler writes the row from the run record once the
    database is back (docs/reliability.md, control DB outage).
    """
    try:
        write()
    except ConnectError as exc:
        context.log.warning(f"status not written, the run-status sensor will: {exc.for_row()}")


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
