"""Engines for the control database: one per URL per process, created on first use.

Sensors build a repository every few seconds; creating an engine (and a pool) each time would open
a fresh connection per tick. The cache is cleared in a forked child, because pooled connections must
never be shared across processes.
"""

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from cdc_assets.errors import ConfigError, ConnectError
from cdc_assets.secrets import ENV_PREFIX, BadReference, redact_url, resolve_reference, scrub

_CONNECT_SQLSTATE_CLASSES = ("08", "28", "3D", "57P")
"""connection exception, invalid authorization, invalid catalog name, operator intervention."""

_DRIVER_ALIASES = ("postgresql", "postgres", "postgresql+psycopg2", "postgresql+psycopg")

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def normalise_url(url: str) -> str:
    """Return a ``postgresql+psycopg://`` URL for SQLAlchemy (psycopg 3 is the only driver we use).

    Accepts ``postgresql://``, ``postgres://``, ``postgresql+psycopg2://`` and ``env:VAR``.
    """
    raw = url.strip()
    try:
        if raw.startswith(ENV_PREFIX):
            raw = resolve_reference(raw)
        scheme, sep, rest = raw.partition("://")
        if not sep or scheme not in _DRIVER_ALIASES:
            raise BadReference(f"control DB URL {redact_url(raw)!r} must start with postgresql://")
        normalised = "postgresql+psycopg://" + rest
        make_url(normalised)
    except (BadReference, ArgumentError, ValueError) as exc:
        raise ConfigError(
            f"invalid control DB URL: {exc}",
            fix="set CDC_CONTROL_DB_URL to postgresql+psycopg://user@host:5432/db",
        ) from None
    return normalised


def libpq_url(url: str) -> str:
    """The control URL for psycopg itself (the advisory-lock connection bypasses SQLAlchemy)."""
    normalised = normalise_url(url)
    return make_url(normalised).set(drivername="postgresql").render_as_string(hide_password=False)


def get_engine(url: str, **kwargs: Any) -> Engine:
    """The process-wide engine for ``url`` (normalised), with ``pool_pre_ping`` on."""
    key = normalise_url(url)
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            engine = create_engine(
                key,
                pool_pre_ping=True,
                pool_size=5,
                max_overflow=10,
                pool_recycle=1800,
                connect_args={"connect_timeout": 10, "application_name": "cdc_assets:control"},
                **kwargs,
            )
            _engines[key] = engine
        return engine


def dispose_engines() -> None:
    """Close every cached engine (tests and the CLI call this before exiting)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def _forget_after_fork() -> None:
    # The parent's pooled sockets stay the parent's: drop them without closing.
    global _lock  # noqa: PLW0603 - a lock held by another thread at fork time would never unlock
    _lock = threading.Lock()
    for engine in _engines.values():
        engine.dispose(close=False)
    _engines.clear()


os.register_at_fork(after_in_child=_forget_after_fork)


def is_connect_failure(exc: BaseException) -> bool:
    """True for "cannot reach / log in to the database" as opposed to a failing statement."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if not isinstance(orig, psycopg.OperationalError):
        return False
    state = orig.sqlstate
    return state is None or state.startswith(_CONNECT_SQLSTATE_CLASSES)


@contextmanager
def connect_errors(url: str) -> Iterator[None]:
    """Translate the two failures an operator can fix into one-line typed errors.

    "Control DB unreachable" becomes :class:`ConnectError` (URL redacted); a missing schema becomes
    :class:`ConfigError` that says to run ``cdc-assets init``.
    """
    try:
        yield
    except DBAPIError as exc:
        if isinstance(exc.orig, psycopg.errors.UndefinedTable):
            raise ConfigError(
                "the control schema is missing (public.pipelines does not exist)",
                fix="run `cdc-assets init` against this control DB",
            ) from None
        if not is_connect_failure(exc):
            raise
        raise ConnectError(
            f"cannot reach the control DB {redact_url(url)}: {first_line(scrub(str(exc.orig)))}",
            fix="check CDC_CONTROL_DB_URL (host, port, database, user, password)",
        ) from None


def first_line(message: str) -> str:
    """The first non-blank line of a driver message (details and hints span more lines)."""
    return next((line.strip() for line in message.splitlines() if line.strip()), message.strip())
