"""Replace the live tables by their loaded stages in one short transaction, with the watermark.

A reader of the target sees either every old table or every new one: DROP and RENAME take ACCESS
EXCLUSIVE locks that commit together, and a query that was waiting for the old table re-resolves
the name after the lock is granted, so it reads the new table. The watermark is written in the same
transaction, so CDC starts exactly at the consistent LSN of the data that became visible.
"""

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from cdc_assets.domain import Lsn
from cdc_assets.errors import TargetError
from cdc_assets.pg.catalog import TableInfo
from cdc_assets.pg.connect import first_line
from cdc_assets.secrets import scrub
from cdc_assets.target.ddl import index_names, stage_index_names
from cdc_assets.target.leaves import set_leaves
from cdc_assets.target.watermark import delete_watermark, set_watermark


@dataclass(frozen=True, slots=True)
class SwapItem:
    """One stage becoming one live table."""

    stage: str
    live: str
    table: TableInfo


def swap_in(
    conn: psycopg.Connection[Any],
    schema: str,
    items: list[SwapItem],
    *,
    pipeline: str,
    lsn: Lsn | None,
    leaves: dict[int, int] | None = None,
) -> None:
    """Drop old live tables, rename stages into place, set (or clear) the watermark; one commit.

    Without an LSN (``full_load`` mode) any earlier watermark is removed, so CDC can never resume
    from a position that no longer matches the data. ``leaves`` (leaf partition OID -> heap file,
    read before the snapshot) is recorded with the watermark: the first CDC batch compares with it,
    so a leaf truncated between the copy and that batch (which pgoutput never sends) fails loudly
    instead of keeping its rows on the target (``target/leaves.py``).
    """
    current: SwapItem | None = None
    try:
        with conn.transaction():
            for item in items:
                current = item
                conn.execute(
                    sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(schema, item.live))
                )
                conn.execute(
                    sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                        sql.Identifier(schema, item.stage), sql.Identifier(item.live)
                    )
                )
                old_pk, old_idx = stage_index_names(item.stage, item.table)
                new_pk, new_idx = index_names(item.live, item.table)
                renames = list(zip(old_idx, new_idx, strict=True))
                if old_pk is not None and new_pk is not None:
                    renames.insert(0, (old_pk, new_pk))
                for old, new in renames:
                    conn.execute(
                        sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                            sql.Identifier(schema, old), sql.Identifier(new)
                        )
                    )
            current = None
            if lsn is not None:
                set_watermark(conn, schema, pipeline, lsn)
                set_leaves(conn, schema, pipeline, leaves or {}, lsn)
            else:
                delete_watermark(conn, schema, pipeline)
    except psycopg.errors.DependentObjectsStillExist as exc:
        assert current is not None
        raise TargetError(
            f"the live table cannot be replaced: {first_line(scrub(str(exc)))}",
            pipeline=pipeline,
            table=sql.Identifier(schema, current.live).as_string(conn),
            fix="drop the views or foreign keys on the target that depend on it, or point them "
            "at another table",
        ) from None
    except psycopg.errors.DuplicateTable as exc:
        raise TargetError(
            f"an index name is taken on the target: {first_line(scrub(str(exc)))}",
            pipeline=pipeline,
            table=current.live if current else None,
            fix="rename the conflicting index in the target schema",
        ) from None
