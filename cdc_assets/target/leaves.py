"""The heap file of every leaf partition at the last batch, kept in the target with the watermark.

With ``publish_via_partition_root`` (how the pipeline's publication is made) PostgreSQL's
pgoutput does not send a ``TRUNCATE`` of one leaf partition at all: it only sends truncates of the
published root. A truncated leaf gets a new heap file (``pg_relation_filenode``), so comparing each
leaf's file with the one recorded by the previous batch finds it, and the batch fails naming the
partition instead of keeping its rows on the target silently. The record is written in the
batch's own transaction, next to the watermark, with that watermark: a record whose LSN is not
the target's watermark is from before a new full load (a reset), and is ignored.
"""

from typing import Any

import psycopg
from psycopg import sql

from cdc_assets.domain import Lsn

LEAVES_TABLE = "_cdc_assets_leaves"


def _table(schema: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(LEAVES_TABLE))


def get_leaves(
    conn: psycopg.Connection[Any], schema: str, pipeline: str, watermark: Lsn
) -> dict[int, int] | None:
    """Leaf OID -> heap file recorded with ``watermark``; None when nothing was recorded then."""
    if not _exists(conn, schema):
        return None
    rows = conn.execute(
        sql.SQL(
            "SELECT leaf::bigint, filenode::bigint FROM {} WHERE pipeline = %s AND lsn = %s::pg_lsn"
        ).format(_table(schema)),
        (pipeline, str(watermark)),
    ).fetchall()
    return {int(r[0]): int(r[1]) for r in rows} if rows else None


def set_leaves(
    conn: psycopg.Connection[Any], schema: str, pipeline: str, leaves: dict[int, int], lsn: Lsn
) -> None:
    """Replace the pipeline's record with the new watermark; call inside the batch's transaction."""
    if not leaves and not _exists(conn, schema):
        return  # no partitioned table: create nothing on the target
    conn.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (pipeline text NOT NULL, leaf oid NOT NULL,"
            " filenode oid NOT NULL, lsn pg_lsn NOT NULL, PRIMARY KEY (pipeline, leaf))"
        ).format(_table(schema))
    )
    conn.execute(sql.SQL("DELETE FROM {} WHERE pipeline = %s").format(_table(schema)), (pipeline,))
    with conn.cursor() as cur:
        cur.executemany(
            sql.SQL(
                "INSERT INTO {} (pipeline, leaf, filenode, lsn) VALUES (%s, %s, %s, %s)"
            ).format(_table(schema)),
            [(pipeline, leaf, node, str(lsn)) for leaf, node in sorted(leaves.items())],
        )


def forget_leaves_sql(schema: str, pipeline: str, leaves: list[int]) -> sql.Composed:
    """The statement that drops the record of ``leaves``: how a user accepts their new state."""
    return sql.SQL("DELETE FROM {} WHERE pipeline = {} AND leaf IN ({})").format(
        sql.Identifier(schema, LEAVES_TABLE),
        sql.Literal(pipeline),
        sql.SQL(", ").join(sql.Literal(oid) for oid in leaves),
    )


def _exists(conn: psycopg.Connection[Any], schema: str) -> bool:
    row = conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL", (_table(schema).as_string(conn),)
    ).fetchone()
    return bool(row and row[0])
