"""The checks that the pipeline's source tables can be captured and are the ones published.

Run before a CDC batch reads the slot: a missing table, one without a key pgoutput sends, or a
row whose tables differ from the publication's would otherwise apply wrongly or not at all while
the row stays ACTIVE.
"""

from typing import Any

import psycopg
from psycopg import sql

from cdc_assets.domain import PipelineSpec, TableRef
from cdc_assets.errors import ConsistencyError, SourceError
from cdc_assets.source import changes


def check_tables(spec: PipelineSpec, src: psycopg.Connection[Any]) -> None:
    """Fail unless every pipeline table exists and has a replica identity that keys its rows."""
    for table in spec.tables:
        ident = changes.table_identity(src, table.schema, table.name)
        if ident is None:
            raise SourceError(
                "source table does not exist",
                pipeline=spec.name,
                table=str(table),
                fix=missing_table_fix(spec, src, table),
            )
        has_key, replident = ident
        # A key pgoutput sends: the primary key (identity default), the identity index's columns
        # (USING INDEX, with or without a primary key; the target has a unique index on them),
        # or every column (FULL).
        if not (replident == "f" or (has_key and replident in ("d", "i"))):
            raise SourceError(
                "CDC needs a primary key or REPLICA IDENTITY FULL to match updates and deletes",
                pipeline=spec.name,
                table=str(table),
                fix=f"add a primary key or run ALTER TABLE {table} REPLICA IDENTITY FULL (or "
                "USING INDEX <a unique index on NOT NULL columns>)",
            )


def missing_table_fix(spec: PipelineSpec, src: psycopg.Connection[Any], table: TableRef) -> str:
    """The fix for a pipeline table missing by name: renamed (still published, by OID) or gone.

    A renamed table's changes wait in the slot; the batch follows tables by OID, so renaming it
    back loses nothing.
    """
    published = changes.publication_tables(src, spec.publication_name) or frozenset()
    others = sorted(published - frozenset(spec.tables))
    if not others:
        return "restore the table or remove it from the pipeline and reset it"
    new = others[0] if len(others) == 1 else None
    if new is None:
        where = ", ".join(map(str, others))
        return (
            f"publication {spec.publication_name} now also lists {where}: if the table was "
            f"renamed, rename it back to {table.name} and rerun (nothing is lost), or reset the "
            "pipeline with the new name in its tables (a new full load)"
        )
    steps = []
    if new.schema != table.schema:
        steps.append(
            sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(
                sql.Identifier(new.schema, new.name), sql.Identifier(table.schema)
            )
        )
    if new.name != table.name:
        steps.append(
            sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                sql.Identifier(table.schema, new.name), sql.Identifier(table.name)
            )
        )
    back = sql.SQL("; ").join(steps)
    return (
        f"it looks renamed or moved to {new} (publication {spec.publication_name} lists it): run "
        f"{back.as_string(src)} on the source and rerun, nothing is lost; to adopt the new name, "
        f"reset the pipeline with {new} in its tables instead of {table} (a new full load)"
    )


def check_publication_covers(spec: PipelineSpec, src: psycopg.Connection[Any]) -> None:
    """Fail unless the publication sends exactly the row's tables.

    The publication is made from the row's tables by the full load; ``tables`` edited afterwards
    (by SQL: the row is the whole configuration) would otherwise leave an added table never
    copied nor captured, or a removed one still applied, while the row stays ACTIVE. Until
    table-level edits exist, the only way to change the table list is a reset and a new full
    load, so that is the fix the message names.
    """
    published = changes.publication_tables(src, spec.publication_name)
    if published is None:
        return  # no publication: the callers report that with its own message
    wanted = frozenset(spec.tables)
    missing, extra = sorted(wanted - published), sorted(published - wanted)
    if not missing and not extra:
        return
    parts = []
    if missing:
        parts.append(
            "in the row but not captured (added after the full load, or recreated: never "
            "copied): " + ", ".join(t.display for t in missing)
        )
    if extra:
        parts.append(
            "captured but no longer in the row (removed after the full load, or renamed on "
            "the source): " + ", ".join(t.display for t in extra)
        )
    raise ConsistencyError(
        f"the pipeline's tables differ from publication {spec.publication_name}: "
        + "; ".join(parts),
        pipeline=spec.name,
        table=", ".join(t.display for t in missing + extra),
        fix=f"run `cdc-assets pipeline reset {spec.name}` to copy and capture the row's tables "
        "with a new full load (editing the tables of a loaded pipeline is not supported yet)",
    )
