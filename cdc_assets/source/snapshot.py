"""One snapshot for the whole pipeline, shared by every reader, and the COPY queries that read it.

Why the load is consistent: every table and every CTID range is read by a REPEATABLE READ
transaction that imported the same snapshot (``SET TRANSACTION SNAPSHOT`` as its first statement),
so all of them see exactly the transactions committed before the snapshot was taken, however long
the copy runs and whatever writers do meanwhile. For ``full_load_and_cdc`` the snapshot is the one
exported by the replication slot's creation (see :mod:`cdc_assets.source.replication`), which ends
exactly at the slot's consistent LSN. For ``full_load`` a coordinator transaction exports it with
``pg_export_snapshot()`` and stays open until every worker has imported it (an exported snapshot can
only be imported while its exporting transaction is alive).

CTID ranges partition a table's heap by block number: each visible tuple version lives in exactly
one block, and the versions visible to the snapshot cannot move or disappear while the snapshot
holds back vacuum, so the ranges together return every visible row exactly once. The last range has
no upper bound so rows in blocks added after planning are never missed.
"""

import itertools
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from cdc_assets.pg.catalog import TableInfo
from cdc_assets.pg.connect import connect

MAX_RANGES_PER_TABLE = 64
FALLBACK_ROW_BYTES = 128
"""Row width assumed for a never-analyzed table (reltuples = -1) when estimating its rows."""


@dataclass(frozen=True, slots=True)
class BlockRange:
    """Heap blocks ``[start, stop)``; ``stop`` None means "to the end of the table"."""

    start: int
    stop: int | None


@contextmanager
def exported_snapshot(source_url: str, pipeline: str) -> Iterator[str]:
    """Export a snapshot from a transaction held open for the block (``full_load`` mode)."""
    conn = connect(source_url, pipeline=pipeline, role="source")
    try:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        row = conn.execute("SELECT pg_export_snapshot()").fetchone()
        assert row is not None
        yield str(row[0])
    finally:
        conn.close()


def import_snapshot(conn: psycopg.Connection[Any], snapshot: str) -> None:
    """Begin a read-only REPEATABLE READ transaction on ``snapshot`` (its first statement)."""
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))


def heap_blocks(conn: psycopg.Connection[Any], table: TableInfo) -> int:
    """Current number of heap blocks (not MVCC: read it while holding the snapshot)."""
    row = conn.execute(
        "SELECT pg_relation_size(%s::oid) / current_setting('block_size')::bigint",
        (table.oid,),
    ).fetchone()
    return int(row[0]) if row else 0


def estimate_rows(table: TableInfo, blocks: int) -> int:
    """Rows the table probably has now, the way the planner scales ``reltuples`` to its size."""
    if table.pages > 0 and table.estimated_rows > 0:
        return math.ceil(table.estimated_rows / table.pages * blocks)
    return blocks * 8192 // FALLBACK_ROW_BYTES


def plan_ranges(table: TableInfo, blocks: int, threshold: int) -> tuple[BlockRange | None, ...]:
    """Split a big table into CTID block ranges of about ``threshold`` rows each.

    Returns ``(None,)`` (one plain COPY of the table) when it is small or has no heap of its own.
    """
    if table.is_partitioned or blocks <= 1:
        return (None,)
    rows = estimate_rows(table, blocks)
    parts = min(math.ceil(rows / max(threshold, 1)), MAX_RANGES_PER_TABLE, blocks)
    if parts <= 1:
        return (None,)
    bounds = [blocks * i // parts for i in range(parts)]
    ranges = [BlockRange(a, b) for a, b in itertools.pairwise(bounds)]
    ranges.append(BlockRange(bounds[-1], None))
    return tuple(ranges)


def column_list(table: TableInfo) -> sql.Composable:
    """The table's columns, in order, as identifiers (what the checksums compare)."""
    return sql.SQL(", ").join(sql.Identifier(c.name) for c in table.columns)


def copy_column_list(table: TableInfo) -> sql.Composable:
    """The columns COPY moves: all but the generated columns the target computes itself.

    COPY into a generated column is an error, and the target's own value is the right one.
    """
    return sql.SQL(", ").join(sql.Identifier(c.name) for c in table.copied_columns)


def copy_out_query(table: TableInfo, rng: BlockRange | None, *, binary: bool) -> sql.Composed:
    """``COPY ... TO STDOUT`` for a whole table or one CTID block range (TID Range Scan, PG14+)."""
    fmt = sql.SQL("BINARY" if binary else "TEXT")
    name = sql.Identifier(table.ref.schema, table.ref.name)
    cols = copy_column_list(table)
    # COPY TO cannot name a generated column: the plain copy of one (see ddl.py) needs a SELECT.
    needs_select = table.is_partitioned or any(c.generated for c in table.copied_columns)
    if rng is None and not needs_select:
        return sql.SQL("COPY {} ({}) TO STDOUT (FORMAT {})").format(name, cols, fmt)
    if rng is None:
        return sql.SQL("COPY (SELECT {} FROM {}) TO STDOUT (FORMAT {})").format(cols, name, fmt)
    lower = sql.Literal(f"({rng.start},0)")
    if rng.stop is None:
        where = sql.SQL("ctid >= {}::tid").format(lower)
    else:
        upper = sql.Literal(f"({rng.stop},0)")
        where = sql.SQL("ctid >= {}::tid AND ctid < {}::tid").format(lower, upper)
    return sql.SQL("COPY (SELECT {} FROM {} WHERE {}) TO STDOUT (FORMAT {})").format(
        cols, name, where, fmt
    )


def checksum_query(table_name: sql.Composable, columns: sql.Composable) -> sql.Composed:
    """Row count and an order-independent content hash, computed by the server.

    Each row's text form is hashed to 64 bits and the hashes are summed as numeric (no overflow,
    no cancelling of duplicate rows as XOR would). Both sides run it with the same session
    settings (UTC, ISO dates) and the same column order, so equal data gives equal sums.
    """
    return sql.SQL(
        "SELECT count(*), coalesce(sum(hashtextextended(ROW({})::text, 0)::numeric), 0)::text "
        "FROM {}"
    ).format(columns, table_name)
