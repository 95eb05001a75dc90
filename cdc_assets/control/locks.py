"""The per-pipeline advisory lock: at most one run of a pipeline touches its source and target.

A session-level ``pg_try_advisory_lock`` on a dedicated connection (not a pooled one: a pooled
connection returned with the lock still held would keep it for whoever borrows it next). The lock
lives as long as that connection, so a killed process releases it when its socket closes.
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import psycopg

from cdc_assets.errors import ConcurrentRunError
from cdc_assets.pg.connect import connect

LOCK_NAMESPACE = 0x43444341
"""First key of the two-int4 form ('CDCA' as a signed int4); the second is the pipeline id."""


def lock_key(pipeline_id: int) -> tuple[int, int]:
    """The two int4 halves identifying a pipeline's lock, in our own namespace."""
    objid = pipeline_id & 0xFFFFFFFF
    if objid >= 1 << 31:
        objid -= 1 << 32
    return LOCK_NAMESPACE, objid


def _holder(conn: psycopg.Connection[Any], key: tuple[int, int]) -> str:
    row = conn.execute(
        "SELECT a.pid, a.application_name, a.backend_start FROM pg_locks l "
        "JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s::int::oid "
        "AND l.objid = %s::int::oid AND l.objsubid = 2 AND l.database = "
        "(SELECT oid FROM pg_database WHERE datname = current_database()) LIMIT 1",
        (key[0], key[1]),
    ).fetchone()
    if row is None:
        return "another session"
    pid, app, started = row
    since = f"{started:%Y-%m-%d %H:%M:%S%z}"
    return f"backend pid {pid} ({app or 'no application_name'}, connected {since})"


LOCK_POLL_S = 0.5
"""How often a waiting lock (``wait_s`` > 0) asks again."""


@contextmanager
def hold_pipeline_lock(
    libpq_url: str, *, pipeline: str, pipeline_id: int, wait_s: float = 0.0
) -> Iterator[None]:
    """Hold the pipeline's lock for the ``with`` block or raise :class:`ConcurrentRunError`.

    ``wait_s`` > 0: ask again every :data:`LOCK_POLL_S` on the same session for up to that long
    (a stream run asked to stop lets go within a batch) before giving up.
    """
    key = lock_key(pipeline_id)
    conn = connect(
        libpq_url,
        pipeline=pipeline,
        role="control DB",
        autocommit=True,
        keepalives=1,
        keepalives_idle=30,
        keepalives_interval=10,
        keepalives_count=3,
    )
    try:
        deadline = time.monotonic() + wait_s
        while True:
            row = conn.execute("SELECT pg_try_advisory_lock(%s::int4, %s::int4)", key).fetchone()
            if (row and row[0]) or time.monotonic() >= deadline:
                break
            time.sleep(LOCK_POLL_S)
        if not row or not row[0]:
            raise ConcurrentRunError(
                f"another run holds the pipeline lock: {_holder(conn, key)}",
                pipeline=pipeline,
                fix="wait for the running job of this pipeline to finish, or cancel it",
            )
        try:
            yield
        finally:
            # Closing the connection below releases the lock even if the unlock fails.
            if not conn.closed:
                with suppress(psycopg.Error):
                    conn.execute("SELECT pg_advisory_unlock(%s::int4, %s::int4)", key)
    finally:
        conn.close()
