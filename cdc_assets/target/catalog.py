"""What the apply step needs to know about a target table: its columns, types and primary key."""

from dataclasses import dataclass
from typing import Any

import psycopg

from cdc_assets.domain import TableRef


@dataclass(frozen=True, slots=True)
class TargetTable:
    """A target table's live shape; re-read after the apply step alters it."""

    table: TableRef
    columns: dict[str, str]  # name -> format_type(), in attnum order; generated columns left out
    primary_key: tuple[str, ...]
    generated: frozenset[str] = frozenset()
    """Generated columns: the target computes them, so the apply never writes them, and their
    absence from a Relation (pgoutput before PostgreSQL 18) is not a dropped column."""


def describe_table(conn: psycopg.Connection[Any], table: TableRef) -> TargetTable | None:
    """Columns and primary key of ``table`` on the target, or None when it does not exist."""
    row = conn.execute(
        "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')",
        (table.schema, table.name),
    ).fetchone()
    if row is None:
        return None
    oid = row[0]
    cols = conn.execute(
        "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute"
        " WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped AND attgenerated = ''"
        " ORDER BY attnum",
        (oid,),
    ).fetchall()
    generated = conn.execute(
        "SELECT attname::text FROM pg_attribute"
        " WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped AND attgenerated <> ''",
        (oid,),
    ).fetchall()
    pk = conn.execute(
        "SELECT a.attname::text FROM pg_index i"
        " JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true"
        " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
        " WHERE i.indrelid = %s AND i.indisprimary ORDER BY k.ord",
        (oid,),
    ).fetchall()
    return TargetTable(
        table=table,
        columns={name: typ for name, typ in cols},
        primary_key=tuple(name for (name,) in pk),
        generated=frozenset(name for (name,) in generated),
    )
