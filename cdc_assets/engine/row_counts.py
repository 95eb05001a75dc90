"""Row counts for the ``row_counts_match`` check when it is evaluated outside a full load.

Inside the load the check compares the rows copied with what the swapped-in table holds (both in
``FullLoadResult``, from the source's and the target's ``COPY`` tags). Later, a ``full_load``
target changes only by a new load, so its count must still equal what the last load copied. A
``full_load_and_cdc`` target follows the source, so it is compared with the source, and only when
the comparison means something: every change of the pipeline's tables is applied (no pending
change in the slot, checked before and after counting the source in one snapshot) and the caller
holds the pipeline lock, so no batch moves the target meanwhile. Under a steady writer that is
rarely true, and then the answer is "not compared", never a false mismatch.
"""

import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from cdc_assets.domain import Lsn, PipelineSpec, TableRef
from cdc_assets.pg.connect import connect

#: How long to wait for the WAL of the counted snapshot to be flushed (asynchronous commits are
#: visible before their WAL is flushed, and decoding sees only flushed WAL).
FLUSH_WAIT_S = 10.0


@dataclass(frozen=True, slots=True)
class CaughtUpCounts:
    """Source rows in one snapshot and target rows, per table, with nothing pending between."""

    source: dict[TableRef, int | None]
    target: dict[TableRef, int | None]


def count_tables(
    conn: psycopg.Connection[Any], tables: tuple[TableRef, ...], schema: str | None = None
) -> dict[TableRef, int | None]:
    """Exact counts on ``conn`` (``None`` for a missing table); ``schema`` overrides each one's."""
    counts: dict[TableRef, int | None] = {}
    for table in tables:
        ident = sql.Identifier(schema or table.schema, table.name)
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (ident.as_string(conn),))
        found = exists.fetchone()
        if not found or not found[0]:
            counts[table] = None
            continue
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(ident)).fetchone()
        counts[table] = int(row[0]) if row else None
    return counts


def caught_up_counts(
    spec: PipelineSpec, *, source_url: str, target_url: str
) -> CaughtUpCounts | None:
    """Counts of a CDC pipeline whose target has applied every change; ``None`` if not so now.

    The caller holds the pipeline lock. Source rows are counted in one REPEATABLE READ snapshot
    taken between two "no pending change" answers of the slot, the second one after the WAL up
    to that snapshot is flushed: every change the snapshot sees was then confirmed by the slot,
    so it is in the target, and none it misses had been written yet.
    """
    from cdc_assets.engine.cdc import has_pending_changes

    name = spec.name
    tables = spec.tables
    if has_pending_changes(spec, source_url=source_url):
        return None
    with connect(source_url, pipeline=name, role="source") as src:
        src.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        src.read_only = True
        source = count_tables(src, tables)
        row = src.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
        src.rollback()
        assert row is not None
        if not _wait_flushed(src, Lsn(row[0])):
            return None
    if has_pending_changes(spec, source_url=source_url):
        return None
    with connect(target_url, pipeline=name, role="target", autocommit=True) as tgt:
        target = count_tables(tgt, tables, spec.target_schema)
    return CaughtUpCounts(source=source, target=target)


def _wait_flushed(conn: psycopg.Connection[Any], lsn: Lsn) -> bool:
    """Until the server's flushed WAL reaches ``lsn`` (the WAL writer does so within ~200 ms)."""
    conn.autocommit = True
    deadline = time.monotonic() + FLUSH_WAIT_S
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT pg_current_wal_flush_lsn() >= %s::pg_lsn", (str(lsn),)
        ).fetchone()
        if row and row[0]:
            return True
        conn.execute("SELECT pg_sleep(0.05)")
    return False
