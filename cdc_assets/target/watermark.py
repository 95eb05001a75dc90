"""The LSN watermark kept in the target, in the same transaction as the rows it covers.

The target, not the control DB, holds the authoritative "applied up to" position: a batch's rows and
its watermark commit together, so after any crash the watermark says exactly what is in the target.
``public.pipelines.cdc_lsn`` is a copy for operators. The table lives in the pipeline's target
schema so a target role that owns only that schema can run the pipeline.
"""

from typing import Any

import psycopg
from psycopg import sql

from cdc_assets.domain import Lsn

WATERMARK_TABLE = "_cdc_assets_watermark"


def _table(schema: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(WATERMARK_TABLE))


def ensure_watermark_table(conn: psycopg.Connection[Any], schema: str) -> None:
    """Create the watermark table in ``schema`` if missing (idempotent, safe under concurrency)."""
    conn.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            " pipeline text PRIMARY KEY,"
            " lsn pg_lsn NOT NULL,"
            " updated_at timestamptz NOT NULL DEFAULT clock_timestamp())"
        ).format(_table(schema))
    )


def set_watermark(conn: psycopg.Connection[Any], schema: str, pipeline: str, lsn: Lsn) -> None:
    """Record that the target holds every change up to ``lsn``; call inside the batch txn."""
    conn.execute(
        sql.SQL(
            "INSERT INTO {} (pipeline, lsn) VALUES (%s, %s::pg_lsn) "
            "ON CONFLICT (pipeline) DO UPDATE"
            " SET lsn = EXCLUDED.lsn, updated_at = clock_timestamp()"
        ).format(_table(schema)),
        (pipeline, str(lsn)),
    )


def get_watermark(conn: psycopg.Connection[Any], schema: str, pipeline: str) -> Lsn | None:
    """The applied-up-to LSN, or None when the table or the pipeline's row does not exist."""
    exists = conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL",
        (sql.SQL("{}").format(_table(schema)).as_string(conn),),
    ).fetchone()
    if not exists or not exists[0]:
        return None
    row = conn.execute(
        sql.SQL("SELECT lsn::text FROM {} WHERE pipeline = %s").format(_table(schema)), (pipeline,)
    ).fetchone()
    return Lsn(row[0]) if row else None


def delete_watermark(conn: psycopg.Connection[Any], schema: str, pipeline: str) -> None:
    """Forget a pipeline's position (reset/remove); a missing table is fine."""
    if get_watermark(conn, schema, pipeline) is None:
        return
    conn.execute(sql.SQL("DELETE FROM {} WHERE pipeline = %s").format(_table(schema)), (pipeline,))
