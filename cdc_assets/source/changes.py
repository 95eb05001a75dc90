"""The pipeline's slot seen over an ordinary connection: state, end point, advance, lag.

Also the alternative reader, ``pg_logical_slot_peek_binary_changes`` through a named cursor
(:func:`read_changes`). The engine streams instead (``source/stream.py``), because on this machine
that reads the same backlog faster (bench/cdc.py compares the two, docs/benchmarks.md has the
numbers); peek stays as the reference the stream reader is tested against: both must yield the
same messages.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg

from cdc_assets.domain import AddedColumnFill, Lsn, TableRef

HEARTBEAT_PREFIX = "cdc_assets"
FETCH_SIZE = 5000


@dataclass(frozen=True, slots=True)
class SlotInfo:
    """What the batch's safety checks need to know about the pipeline's slot."""

    name: str
    plugin: str
    database: str
    confirmed_flush_lsn: Lsn | None
    restart_lsn: Lsn | None
    active_pid: int | None
    wal_status: str | None


def get_slot(conn: psycopg.Connection[Any], slot: str) -> SlotInfo | None:
    """The slot's state, or None when no slot of that name exists (dropped underneath us)."""
    row = conn.execute(
        "SELECT slot_name::text, plugin::text, database::text, confirmed_flush_lsn::text,"
        " restart_lsn::text, active_pid, wal_status FROM pg_replication_slots"
        " WHERE slot_name = %s AND slot_type = 'logical'",
        (slot,),
    ).fetchone()
    if row is None:
        return None
    return SlotInfo(
        name=row[0],
        plugin=row[1],
        database=row[2],
        confirmed_flush_lsn=Lsn(row[3]) if row[3] else None,
        restart_lsn=Lsn(row[4]) if row[4] else None,
        active_pid=row[5],
        wal_status=row[6],
    )


def publication_exists(conn: psycopg.Connection[Any], publication: str) -> bool:
    """True when the pipeline's publication is still there (a peek without it fails late)."""
    row = conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (publication,))
    return row.fetchone() is not None


def publication_tables(
    conn: psycopg.Connection[Any], publication: str
) -> frozenset[TableRef] | None:
    """The tables whose changes the publication sends, as catalog names (unquoted, case kept).

    Read from ``pg_publication_tables``, which lists what decoding will actually emit: with
    ``publish_via_partition_root`` (how the full load creates the publication) a partitioned table
    appears under its own name, not its partitions', so it compares equal to the row's entry.
    ``None`` when there is no such publication (one query answers both, for the sensors' sake).
    """
    rows = conn.execute(
        "SELECT t.schemaname::text, t.tablename::text FROM pg_publication p"
        " LEFT JOIN pg_publication_tables t ON t.pubname = p.pubname WHERE p.pubname = %s",
        (publication,),
    ).fetchall()
    if not rows:
        return None
    return frozenset(TableRef(schema, name) for schema, name in rows if schema is not None)


def flush_source_wal(conn: psycopg.Connection[Any]) -> bool:
    """Make recently committed WAL visible to decoding before the batch picks its end point.

    Logical decoding reads only flushed WAL; with ``synchronous_commit = off`` on the source a
    committed change may sit unflushed for a moment and a batch would miss it (it would come in the
    next one). A transactional logical message committed with ``synchronous_commit = on`` forces the
    flush. It needs the privilege to call ``pg_logical_emit_message`` (superuser by default):
    without it we skip, at the cost of at most ``wal_writer_delay`` of extra latency. Done only
    when some WAL is not flushed yet: on an idle source we write nothing, which would otherwise
    show as pending bytes and launch batch after batch. ``conn`` must be in autocommit mode.
    Returns whether the flush was forced.
    """
    row = conn.execute("SELECT pg_current_wal_insert_lsn() > pg_current_wal_flush_lsn()").fetchone()
    if not row or not row[0]:
        return False  # all written WAL is flushed: writing more would only make work for batches
    try:
        with conn.transaction():
            conn.execute("SET LOCAL synchronous_commit = on")
            conn.execute("SELECT pg_logical_emit_message(true, %s, 'flush')", (HEARTBEAT_PREFIX,))
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True


def current_flush_lsn(conn: psycopg.Connection[Any]) -> Lsn:
    """The end point of a batch: decoding can only see WAL up to here."""
    row = conn.execute("SELECT pg_current_wal_flush_lsn()::text").fetchone()
    assert row is not None
    return Lsn(row[0])


def lag_bytes(conn: psycopg.Connection[Any], slot: str) -> int:
    """Source WAL written after the slot's confirmed position (what the slot still pins)."""
    row = conn.execute(
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint"
        " FROM pg_replication_slots WHERE slot_name = %s",
        (slot,),
    ).fetchone()
    return max(0, int(row[0])) if row and row[0] is not None else 0


def read_changes(
    conn: psycopg.Connection[Any],
    slot: str,
    publication: str,
    *,
    upto: Lsn,
    max_changes: int | None = None,
    fetch_size: int = FETCH_SIZE,
) -> Iterator[bytes]:
    """Yield raw pgoutput messages of whole transactions committed before ``upto``.

    Peeks, never consumes: the slot moves only through :func:`advance_slot` after the target
    committed. ``max_changes`` is the function's ``upto_nchanges``: the server stops after the
    transaction that reaches it, so a huge backlog can be cut into several batches. Must be called
    inside a transaction (the named cursor lives in it); ``conn`` may run other short queries
    between fetches.
    """
    cur = conn.cursor(name="cdc_assets_changes", binary=True)
    cur.itersize = fetch_size
    try:
        cur.execute(
            "SELECT data FROM pg_logical_slot_peek_binary_changes("
            "%s, %s::pg_lsn, %s, 'proto_version', '1', 'publication_names', %s,"
            " 'messages', 'false')",
            (slot, str(upto), max_changes, publication),
        )
        for (data,) in cur:
            yield data
    finally:
        cur.close()


def advance_slot(conn: psycopg.Connection[Any], slot: str, upto: Lsn) -> Lsn:
    """Release WAL up to ``upto`` and return the slot's new confirmed position.

    Called only after the target committed the batch and its watermark in one transaction;
    advancing earlier would lose changes on a crash. Advancing to a position the slot already
    passed is a no-op, so a retried batch is harmless.
    """
    row = conn.execute(
        "SELECT end_lsn::text FROM pg_replication_slot_advance(%s, %s::pg_lsn)",
        (slot, str(upto)),
    ).fetchone()
    assert row is not None
    return Lsn(row[0])


def table_identity(
    conn: psycopg.Connection[Any], schema: str, name: str
) -> tuple[bool, str] | None:
    """(has a primary key, replica identity letter) of a source table, or None if it is missing."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),"
        " c.relreplident::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s",
        (schema, name),
    ).fetchone()
    return (bool(row[0]), str(row[1])) if row else None


FIRST_USER_OID = 16384


def builtin_type_name(conn: psycopg.Connection[Any], type_oid: int, typmod: int) -> str | None:
    """``format_type`` of a built-in type (same OID on every server); None for user types."""
    if type_oid >= FIRST_USER_OID:
        return None
    row = conn.execute("SELECT format_type(%s::oid, %s)", (type_oid, typmod)).fetchone()
    return str(row[0]) if row and row[0] else None


def added_column_fill(
    conn: psycopg.Connection[Any], schema: str, table: str, column: str
) -> AddedColumnFill:
    """How the source filled ``column`` in the rows that existed when it was added."""
    row = conn.execute(
        "SELECT a.atthasmissing, a.attmissingval::text, a.atthasdef OR a.attidentity <> ''"
        " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s AND a.attname = %s AND NOT a.attisdropped",
        (schema, table, column),
    ).fetchone()
    if row is None:
        return AddedColumnFill()
    if row[0] and row[1] is not None:
        return AddedColumnFill(missing=_single_array_element(str(row[1])))
    return AddedColumnFill(per_row=bool(row[2]))


def _single_array_element(text: str) -> str | None:
    """The element of a one-element array literal such as ``{1.5}`` or ``{"a b"}``."""
    inner = text[1:-1] if text.startswith("{") and text.endswith("}") else text
    if inner.startswith('"') and inner.endswith('"'):
        out, i, body = [], 0, inner[1:-1]
        while i < len(body):
            ch = body[i]
            if ch == "\\" and i + 1 < len(body):
                i += 1
                ch = body[i]
            out.append(ch)
            i += 1
        return "".join(out)
    return None if inner == "NULL" else inner
