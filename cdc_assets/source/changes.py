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

from cdc_assets.domain import AddedColumnFill, GeneratedColumn, Lsn, TableRef

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
    """(has the key its identity names, replica identity letter) of a table, or None if missing.

    The key is the primary key for the default identity and the identity index for ``USING
    INDEX``: PostgreSQL publishes that index's columns as the key, primary key or not (and
    nothing, as for ``NOTHING``, once the index is dropped).
    """
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND"
        " CASE c.relreplident WHEN 'i' THEN i.indisreplident ELSE i.indisprimary END),"
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
    conn: psycopg.Connection[Any], relation_id: int, column: str
) -> AddedColumnFill:
    """How the source filled ``column`` in the rows that existed when it was added.

    By relation OID (the table may have been renamed since). A partitioned table stores no rows:
    its leaves hold the fast default (``attmissingval``), while the root only has the default
    expression, so the root alone would look like a default computed per row. The fill is read
    from the leaves; it is exact when every leaf has the same value.
    """
    row = conn.execute(
        "SELECT c.relkind::text, a.atthasmissing, a.attmissingval::text,"
        " a.atthasdef OR a.attidentity <> ''"
        " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
        " WHERE a.attrelid = %s::oid AND a.attname = %s AND NOT a.attisdropped AND a.attnum > 0",
        (relation_id, column),
    ).fetchone()
    if row is None:
        return AddedColumnFill()
    kind, has_missing, missing, has_default = row
    if kind == "p":
        leaves = conn.execute(
            "SELECT a.atthasmissing, a.attmissingval::text"
            " FROM pg_partition_tree(%s::oid::regclass) t JOIN pg_attribute a"
            " ON a.attrelid = t.relid AND a.attname = %s AND NOT a.attisdropped WHERE t.isleaf",
            (relation_id, column),
        ).fetchall()
        if not leaves:
            return AddedColumnFill()  # no partition, so no row existed to fill
        values = {str(v) for m, v in leaves if m and v is not None}
        if len(values) == 1 and all(m for m, _v in leaves):
            return AddedColumnFill(missing=_single_array_element(values.pop()))
        return AddedColumnFill(per_row=bool(has_default))
    if has_missing and missing is not None:
        return AddedColumnFill(missing=_single_array_element(str(missing)))
    return AddedColumnFill(per_row=bool(has_default))


def column_slots(conn: psycopg.Connection[Any], relation_id: int) -> list[tuple[int, str, bool]]:
    """(attnum, name, alive) of a relation's columns now, dropped ones included, in order.

    Generated columns are left out (pgoutput does not send them). Attribute numbers are never
    reused, so this tells a column dropped since an older Relation message from one renamed.
    """
    rows = conn.execute(
        "SELECT attnum::int, attname::text, NOT attisdropped FROM pg_attribute"
        " WHERE attrelid = %s::oid AND attnum > 0 AND attgenerated = '' ORDER BY attnum",
        (relation_id,),
    ).fetchall()
    return [(int(r[0]), str(r[1]), bool(r[2])) for r in rows]


def table_oid(conn: psycopg.Connection[Any], schema: str, name: str) -> int | None:
    """The OID of a source table by name now (None: no such table)."""
    row = conn.execute(
        "SELECT c.oid::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s",
        (schema, name),
    ).fetchone()
    return int(row[0]) if row else None


def generated_columns(
    conn: psycopg.Connection[Any], schema: str, table: str
) -> tuple[GeneratedColumn, ...]:
    """The table's generated columns with their expressions, in column order.

    pgoutput leaves generated columns out before PostgreSQL 18 (and virtual ones always), so one
    added during CDC never shows in a Relation message: the apply asks the catalog instead.
    """
    rows = conn.execute(
        "SELECT a.attname::text,"
        " CASE WHEN a.atttypid < %s THEN format_type(a.atttypid, a.atttypmod) END,"
        " pg_get_expr(d.adbin, d.adrelid), a.attgenerated = 'v'"
        " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
        " WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped"
        " AND a.attgenerated <> '' ORDER BY a.attnum",
        (FIRST_USER_OID, schema, table),
    ).fetchall()
    return tuple(GeneratedColumn(r[0], r[1], r[2], bool(r[3])) for r in rows)


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


def enum_types(
    conn: psycopg.Connection[Any], relation_ids: list[int]
) -> list[tuple[str, tuple[str, ...]]]:
    """(type name, labels in sort order) of the enums the relations' columns use.

    Directly, as an array's element, or as a domain's base (the full load maps such a domain to
    the enum).

    The full load re-creates each under the same name in the target schema; a label added on the
    source later must be added there too before a row carrying it can be applied.
    """
    rows = conn.execute(
        "SELECT DISTINCT e.typname::text, array(SELECT l.enumlabel::text FROM pg_enum l"
        " WHERE l.enumtypid = e.oid ORDER BY l.enumsortorder)"
        " FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid"
        " JOIN pg_type e ON e.oid = CASE WHEN t.typtype = 'e' THEN t.oid"
        " WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.typelem END"
        " WHERE a.attrelid = ANY(%s::oid[]) AND a.attnum > 0 AND NOT a.attisdropped"
        " AND e.typtype = 'e' ORDER BY 1",
        (relation_ids,),
    ).fetchall()
    return [(str(r[0]), tuple(r[1])) for r in rows]


@dataclass(frozen=True, slots=True)
class LeafPartition:
    """A leaf partition of a partitioned pipeline table, with its heap file now."""

    root_oid: int
    oid: int
    schema: str
    name: str
    filenode: int
    bound: str | None  # pg_get_expr(relpartbound): FOR VALUES ... (None: not a partition)


def relation_names(conn: psycopg.Connection[Any], oids: list[int]) -> dict[int, str]:
    """``schema.name`` of those relations that still exist (a dropped one is simply absent)."""
    rows = conn.execute(
        "SELECT c.oid::bigint, n.nspname::text, c.relname::text FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = ANY(%s::oid[])",
        (oids,),
    ).fetchall()
    return {int(r[0]): str(TableRef(r[1], r[2])) for r in rows}


def leaf_partitions(conn: psycopg.Connection[Any], relation_ids: list[int]) -> list[LeafPartition]:
    """Leaf partitions of those relations that are partitioned (none for plain tables)."""
    rows = conn.execute(
        "SELECT r.oid::bigint, c.oid::bigint, n.nspname::text, c.relname::text,"
        " pg_relation_filenode(c.oid)::bigint, pg_get_expr(c.relpartbound, c.oid)"
        " FROM pg_class r CROSS JOIN LATERAL pg_partition_tree(r.oid::regclass) t"
        " JOIN pg_class c ON c.oid = t.relid JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE r.oid = ANY(%s::oid[]) AND r.relkind = 'p' AND t.isleaf AND t.level > 0"
        " AND c.relkind = 'r' ORDER BY 1, 2",
        (relation_ids,),
    ).fetchall()
    return [LeafPartition(int(r[0]), int(r[1]), r[2], r[3], int(r[4] or 0), r[5]) for r in rows]
