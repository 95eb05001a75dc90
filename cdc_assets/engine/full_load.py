"""The full load of one pipeline: one snapshot, parallel COPY into stages, one atomic swap.

Order of work, and why:

1. Read and check every source table and the target schema first, so a wrong table name or a
   missing privilege fails before anything is created.
2. Drop the pipeline's leftovers on the target (stages of a failed or killed attempt), create fresh
   stages; for CDC pipelines recreate the publication, then drop and recreate the slot: a reload
   restarts CDC from the new snapshot.
3. Take the snapshot (the slot's exported one, or ``pg_export_snapshot()``), let every worker
   import it, release it, and copy: tables and CTID ranges of big tables, largest first.
4. Build primary keys and indexes on the stages (one sort each instead of a B-tree insert per row),
   each table's as soon as its last copy committed, on the same workers while the others copy.
5. Swap all stages in at once together with the watermark (``target/swap.py``), then verify row
   counts from the COPY command tags (each source tag equal to the target's for the same stream;
   no second ``count(*)``), and, if enabled, content checksums against what the snapshot held.

A failure anywhere leaves the live tables untouched; stages are dropped on the way out and again by
the next attempt, which also replaces any slot or publication the failed one left.
"""

import math
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from cdc_assets.domain import Lsn, PipelineSpec, TableRef
from cdc_assets.engine.full_load_workers import (
    ChecksumTask,
    CopyTask,
    TableTally,
    WorkerPool,
)
from cdc_assets.errors import ConfigError, ConsistencyError, TargetError
from cdc_assets.pg.catalog import TableInfo, check_cdc_ready, describe_tables, server_major
from cdc_assets.pg.connect import connect, set_session
from cdc_assets.settings import Settings
from cdc_assets.source.changes import leaf_partitions
from cdc_assets.source.replication import (
    drop_slot_if_exists,
    ensure_publication,
    slot_with_snapshot,
)
from cdc_assets.source.snapshot import (
    checksum_query,
    column_list,
    exported_snapshot,
    heap_blocks,
    plan_ranges,
)
from cdc_assets.target.ddl import (
    check_target_schema,
    create_stage,
    drop_stages,
    ensure_enums,
    stage_name,
)
from cdc_assets.target.swap import SwapItem, swap_in
from cdc_assets.target.watermark import ensure_watermark_table

PROGRESS_INTERVAL_S = 2.0


@dataclass(frozen=True, slots=True)
class TableProgress:
    """A progress report for one table; ``done`` once all its rows are in its stage."""

    table: TableRef
    rows: int
    bytes: int
    seconds: float
    done: bool

    @property
    def rate(self) -> float:
        """Bytes per second so far."""
        return self.bytes / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True, slots=True)
class TableResult:
    """What one table's load moved; ``checksum`` only when verification was switched on.

    ``rows`` is exact: the sum of the source's ``COPY n`` command tags of the table's copies,
    each checked equal to the target's tag for the same stream. ``target_rows`` is what the
    live table holds right after the swap: the sum of the target's own ``COPY n`` tags (the swap
    only renames the stage, which nothing else can write), or its ``count(*)`` when checksums are
    on; the pipeline lock is still held, so no CDC batch has changed it. The
    ``row_counts_match`` check compares the two.
    """

    table: TableRef
    rows: int
    bytes: int
    seconds: float
    checksum: str | None
    target_rows: int


@dataclass(frozen=True, slots=True)
class FullLoadResult:
    """The whole load; ``consistent_lsn`` is where CDC starts (None for ``full_load`` pipelines)."""

    pipeline: str
    tables: tuple[TableResult, ...]
    rows: int
    bytes: int
    seconds: float
    consistent_lsn: Lsn | None
    snapshot: str
    warnings: tuple[str, ...] = ()
    """For the operator (the run logs them): generated columns the target holds as plain copies."""


@dataclass(frozen=True, slots=True)
class _Snapshot:
    id: str
    lsn: Lsn | None


def run_full_load(
    spec: PipelineSpec,
    *,
    source_url: str,
    target_url: str,
    settings: Settings,
    progress: Callable[[TableProgress], None] | None = None,
) -> FullLoadResult:
    """Copy every table of ``spec`` from one source snapshot and swap them in atomically."""
    started = time.monotonic()
    name = spec.name
    schema = spec.target_schema
    with (
        connect(source_url, pipeline=name, role="source", autocommit=True) as src,
        connect(target_url, pipeline=name, role="target", autocommit=True) as tgt,
    ):
        tables = describe_tables(src, spec.tables, pipeline=name)
        # Before the snapshot, like the tables' own files: a leaf rewritten after this is seen by
        # the first CDC batch (a false alarm at worst, never a silent gap).
        leaves = {
            leaf.oid: leaf.filenode
            for leaf in leaf_partitions(src, [t.oid for t in tables if t.is_partitioned])
        }
        _check_targets(spec, tables, same_db=_same_database(src, tgt))
        if spec.wants_cdc:
            check_cdc_ready(src, tables, pipeline=name)
        check_target_schema(tgt, schema, pipeline=name)
        same_major = server_major(src) == server_major(tgt)
        drop_stages(tgt, schema, name)
        stages = [stage_name(name, i) for i in range(len(tables))]
        own_slot = False  # True once any slot of this pipeline is this attempt's
        fallbacks: list[tuple[TableRef, str, str]] = []
        try:
            staged = []
            for table, stage in zip(tables, stages, strict=True):
                ensure_enums(tgt, schema, table.enums, pipeline=name)
                staged.append(create_stage(tgt, schema, stage, table))
            tables = tuple(s.table for s in staged)  # generated columns the target cannot compute
            fallbacks += [(s.table.ref, col, why) for s in staged for col, why in s.fallbacks]
            if spec.wants_cdc:
                _check_generated_fallbacks(spec, fallbacks, server_major(src))
                ensure_watermark_table(tgt, schema)
                ensure_publication(src, name, spec.tables)
                drop_slot_if_exists(src, name)
                own_slot = True
            snap, tallies = _copy_all(
                spec,
                source_url=source_url,
                target_url=target_url,
                settings=settings,
                tables=tables,
                stages=stages,
                same_major=same_major,
                progress=progress,
                src=src,
            )
            swap_in(
                tgt,
                schema,
                [SwapItem(s, t.ref.name, t) for t, s in zip(tables, stages, strict=True)],
                pipeline=name,
                lsn=snap.lsn,
                leaves=leaves,
            )
        except BaseException:
            drop_stages(tgt, schema, name)
            if own_slot:
                _drop_slot_best_effort(source_url, name)
            raise
        results = _verify(
            tgt,
            schema=schema,
            pipeline=name,
            tables=tables,
            tallies=tallies,
            checksums=settings.verify_checksums,
        )
    return FullLoadResult(
        pipeline=name,
        tables=results,
        rows=sum(r.rows for r in results),
        bytes=sum(r.bytes for r in results),
        seconds=time.monotonic() - started,
        consistent_lsn=snap.lsn,
        snapshot=snap.id,
        warnings=tuple(
            f"pipeline {name!r}, table {table}: generated column {col!r} is a plain column on the "
            f"target holding the source's values, because its expression fails there ({why}); "
            "CDC keeps it current only from a PostgreSQL 18+ source (fix: create what the "
            "expression uses on the target, then reset and reload for the target to compute it)"
            for table, col, why in fallbacks
        ),
    )


def _drop_slot_best_effort(source_url: str, pipeline: str) -> None:
    """Drop the slot a failed load created: nothing can use it, and it would hold WAL.

    A new full load would replace it anyway, but until someone runs one an inactive slot keeps
    every WAL segment on the source, the classic way CDC fills a database server's disk. Best
    effort on a fresh connection (the load's own may be the reason it failed); the load's error
    is what the caller raises either way.
    """
    try:
        with connect(source_url, pipeline=pipeline, role="source", autocommit=True) as conn:
            drop_slot_if_exists(conn, pipeline)
    except Exception:  # the original failure matters, not this one
        return


def _check_generated_fallbacks(
    spec: PipelineSpec, fallbacks: list[tuple[TableRef, str, str]], source_major: int
) -> None:
    """Refuse CDC for a generated column the target holds as a plain copy, unless it is published.

    Such a column (its expression fails on the target) keeps the source's values only if CDC
    receives them, and pgoutput sends generated columns only from PostgreSQL 18, with the
    publication's ``publish_generated_columns``. Before 18 its copy would go stale at the first
    update, silently: better to stop here and say what would make it computable on the target.
    """
    if not fallbacks or source_major >= 18:
        return
    table, column, why = fallbacks[0]
    raise TargetError(
        f"generated column {column!r} cannot be created on the target with the source's "
        f"expression ({why}), and a PostgreSQL {source_major} source does not publish generated "
        "columns, so CDC could not keep its values",
        pipeline=spec.name,
        table=table.display,
        fix="create on the target what the expression uses (function, type, schema), or use "
        "mode full_load (the column is then copied as a plain column), or a PostgreSQL 18 source",
    )


def _same_database(a: psycopg.Connection[Any], b: psycopg.Connection[Any]) -> bool:
    return (a.info.host, a.info.port, a.info.dbname) == (b.info.host, b.info.port, b.info.dbname)


def _check_targets(spec: PipelineSpec, tables: tuple[TableInfo, ...], *, same_db: bool) -> None:
    """Each source table needs its own target name, and must never be its own target."""
    seen: set[str] = set()
    for t in tables:
        if same_db and t.ref.schema == spec.target_schema:
            raise ConfigError(
                "source and target are the same table: the load would replace its own source",
                pipeline=spec.name,
                table=t.ref.display,
                fix="choose a different target_schema or target database",
            )
        if t.ref.name in seen:
            raise ConfigError(
                f"two source tables would both be loaded as {spec.target_schema}.{t.ref.name}",
                pipeline=spec.name,
                table=t.ref.display,
                fix="list each table once; tables of the same name from different schemas "
                "need separate pipelines with different target schemas",
            )
        seen.add(t.ref.name)


def cleanup_full_load(spec: PipelineSpec, *, source_url: str, target_url: str) -> list[str]:
    """Drop the staging tables a failed or killed load left on the target (used by reset).

    The slot and publication are the source side's business (``source/cleanup.py``);
    ``source_url`` is accepted so callers treat both cleanups alike.
    """
    del source_url
    with connect(target_url, pipeline=spec.name, role="target", autocommit=True) as tgt:
        return drop_stages(tgt, spec.target_schema, spec.name)


@contextmanager
def _take_snapshot(spec: PipelineSpec, source_url: str) -> Iterator[_Snapshot]:
    if spec.wants_cdc:
        with slot_with_snapshot(source_url, spec.name) as slot:
            yield _Snapshot(slot.snapshot, slot.consistent_lsn)
    else:
        with exported_snapshot(source_url, spec.name) as snapshot_id:
            yield _Snapshot(snapshot_id, None)


def _copy_all(
    spec: PipelineSpec,
    *,
    source_url: str,
    target_url: str,
    settings: Settings,
    tables: tuple[TableInfo, ...],
    stages: list[str],
    same_major: bool,
    progress: Callable[[TableProgress], None] | None,
    src: psycopg.Connection[Any],
) -> tuple[_Snapshot, dict[int, TableTally]]:
    holder: AbstractContextManager[_Snapshot] = _take_snapshot(spec, source_url)
    snap = holder.__enter__()
    try:
        tasks: list[CopyTask | ChecksumTask] = []
        tallies: dict[int, TableTally] = {}
        sized: list[tuple[int, CopyTask]] = []
        for table, stage in zip(tables, stages, strict=True):
            blocks = heap_blocks(src, table)
            ranges = plan_ranges(table, blocks, settings.split_rows_threshold)
            binary = table.binary_safe(same_major)
            per_range = math.ceil(max(blocks, 1) / len(ranges))
            sized += [(per_range, CopyTask(table, stage, r, binary)) for r in ranges]
            tallies[table.oid] = TableTally(chunks_left=len(ranges))
        tasks += [t for _, t in sorted(sized, key=lambda p: -p[0])]
        if settings.verify_checksums:
            tasks += [ChecksumTask(t) for t in tables]
        pool = WorkerPool(
            pipeline=spec.name,
            source_url=source_url,
            target_url=target_url,
            target_schema=spec.target_schema,
            snapshot=snap.id,
            tasks=tasks,
            tallies=tallies,
            size=settings.workers,
        )
        pool.start()
        pool.wait_imported()
    finally:
        holder.__exit__(None, None, None)
    by_oid = {t.oid: t for t in tables}
    while not pool.wait(PROGRESS_INTERVAL_S):
        if pool.error is not None:
            break
        _report(progress, pool, tallies, by_oid)
    pool.join()
    if pool.error is not None:
        raise pool.error
    _report(progress, pool, tallies, by_oid)
    return snap, tallies


def _report(
    progress: Callable[[TableProgress], None] | None,
    pool: WorkerPool,
    tallies: dict[int, TableTally],
    by_oid: dict[int, TableInfo],
) -> None:
    if progress is None:
        return
    now = time.monotonic()
    reports = []
    with pool.lock:
        for oid, tally in tallies.items():
            if tally.bytes == tally.reported_bytes:
                continue
            tally.reported_bytes = tally.bytes
            end = tally.finished if tally.finished is not None else now
            reports.append(
                TableProgress(
                    table=by_oid[oid].ref,
                    rows=tally.rows,
                    bytes=tally.bytes,
                    seconds=end - tally.started,
                    done=tally.finished is not None,
                )
            )
    for report in reports:
        progress(report)


def _verify(
    tgt: psycopg.Connection[Any],
    *,
    schema: str,
    pipeline: str,
    tables: tuple[TableInfo, ...],
    tallies: dict[int, TableTally],
    checksums: bool,
) -> tuple[TableResult, ...]:
    """Compare each live table's rows (and optionally hash) with what the snapshot held.

    Without checksums the target's rows are the sum of its ``COPY n`` tags, each already equal to
    the source's tag for the same stream: a ``count(*)`` of the swapped-in table would read the
    whole table once more to learn the same number (nothing else can write a stage).
    """
    set_session(tgt)  # the workers' session options, on this session
    results = []
    for table in tables:
        tally = tallies[table.oid]
        live = sql.Identifier(schema, table.ref.name)
        checksum: str | None = None
        if checksums:
            row = tgt.execute(checksum_query(live, column_list(table))).fetchone()
            assert row is not None and tally.checksum is not None
            count, digest = int(row[0]), str(row[1])
            if (count, digest) != tally.checksum:
                raise ConsistencyError(
                    f"content checksum differs after the swap: source {tally.checksum[0]} rows "
                    f"hash {tally.checksum[1]}, target {count} rows hash {digest}",
                    pipeline=pipeline,
                    table=table.ref.display,
                    fix="re-run the full load; if it repeats, report the table's column types",
                )
            checksum = digest
        else:
            count = tally.target_rows
        if count != tally.rows:
            raise ConsistencyError(
                f"target has {count} rows after the swap, the source snapshot had {tally.rows}",
                pipeline=pipeline,
                table=table.ref.display,
                fix="re-run the full load; make sure nothing else writes the target table",
            )
        end = tally.finished if tally.finished is not None else time.monotonic()
        results.append(
            TableResult(table.ref, tally.rows, tally.bytes, end - tally.started, checksum, count)
        )
    return tuple(results)
