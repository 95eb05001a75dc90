"""The columns of a pipeline's source tables, for the ``dagster/column_schema`` of their assets.

One catalog query for all tables of a pipeline (not one per table): a full load reports every
table's columns once, after its copy, so a catalog (and the UI's column view) shows what the
target holds under the source's own type names.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from cdc_assets.domain import TableRef

COLUMNS_SQL = """
SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       col_description(c.oid, a.attnum)
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN unnest(%s::text[], %s::text[]) AS t(schema_name, table_name)
  ON n.nspname = t.schema_name AND c.relname = t.table_name
WHERE a.attnum > 0 AND NOT a.attisdropped
ORDER BY n.nspname, c.relname, a.attnum
"""


@dataclass(frozen=True, slots=True)
class Column:
    """One column as the catalog describes it."""

    name: str
    type: str
    not_null: bool
    description: str | None


def table_columns(
    conn: psycopg.Connection[Any], tables: Sequence[TableRef]
) -> dict[TableRef, list[Column]]:
    """Every live column of ``tables`` in attribute order; a missing table maps to nothing."""
    found: dict[TableRef, list[Column]] = {}
    rows = conn.execute(
        COLUMNS_SQL, ([t.schema for t in tables], [t.name for t in tables])
    ).fetchall()
    for schema, table, name, type_name, not_null, description in rows:
        found.setdefault(TableRef(schema, table), []).append(
            Column(name, type_name, bool(not_null), description)
        )
    return found
