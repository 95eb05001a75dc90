"""Test helpers for every layer: polling with deadlines, database URLs, throwaway databases."""

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    *,
    timeout: float,
    describe: str,
    interval: float = 0.2,
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail with ``describe`` at the deadline.

    The only way tests wait: no bare sleeps, and a failure says what never happened.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    last_exc: BaseException | None = None
    while True:
        try:
            last = predicate()
            last_exc = None
            if last:
                return last  # type: ignore[no-any-return]
        except AssertionError as exc:
            last_exc = exc
        if time.monotonic() >= deadline:
            msg = f"timed out after {timeout:.0f}s waiting for {describe}; last value: {last!r}"
            if last_exc is not None:
                msg += f"; last assertion: {last_exc}"
            raise AssertionError(msg)
        time.sleep(interval)


def with_database(url: str, database: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


def sqlalchemy_url(url: str) -> str:
    """``postgresql://`` -> ``postgresql+psycopg://`` for SQLAlchemy settings."""
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def create_database(admin_url: str, prefix: str = "t") -> str:
    """Create a fresh, uniquely named database and return its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_database(admin_url, name)


def drop_database(admin_url: str, url: str) -> None:
    """Drop a test database with its replication slots and sessions (slots block DROP DATABASE)."""
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for (slot,) in conn.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE database = %s", (name,)
        ).fetchall():
            conn.execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                "WHERE slot_name = %s AND active_pid IS NOT NULL",
                (slot,),
            )
            wait_until(
                lambda s=slot: (
                    conn.execute(
                        "SELECT NOT active FROM pg_replication_slots WHERE slot_name = %s", (s,)
                    ).fetchone()
                    in (None, (True,))
                ),
                timeout=10,
                describe=f"slot {slot} to become inactive",
            )
            conn.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                "WHERE slot_name = %s",
                (slot,),
            )
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@contextmanager
def temp_database(admin_url: str, prefix: str = "t") -> Iterator[str]:
    """A database that exists for the ``with`` block."""
    url = create_database(admin_url, prefix)
    try:
        yield url
    finally:
        drop_database(admin_url, url)
