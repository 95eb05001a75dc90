"""Open psycopg connections whose failures are typed, named and free of passwords.

Resources call this; ops and engines never call ``psycopg.connect`` themselves, so every connection
error reaching a row or a log has gone through the same translation.
"""

from collections.abc import Mapping
from typing import Any

import psycopg

from cdc_assets.errors import ConfigError, ConnectError
from cdc_assets.secrets import BadReference, redact_url, resolve_reference, scrub

APPLICATION_NAME = "cdc_assets"

SESSION_SETTINGS = (
    ("TimeZone", "UTC"),
    ("DateStyle", "ISO, YMD"),
    ("IntervalStyle", "postgres"),
    ("extra_float_digits", "3"),
)
"""The session settings every data session runs with, so both sides speak the same text forms:
pgoutput prints values with the reading session's settings, text COPY and checksums with the
session's own, and COPY parses them with the target session's. Defined once here: the full load
and the CDC batch use the same values (:data:`SESSION_OPTIONS`, :func:`set_session`)."""

SESSION_OPTIONS = " ".join(
    f"-c {name}={value.replace(' ', '')}" for name, value in SESSION_SETTINGS
)
""":data:`SESSION_SETTINGS` as libpq startup ``options`` (``connect(..., options=...)``), for
sessions that pass them when they open (the full load's workers)."""


def resolve(
    ref: str, *, pipeline: str | None, role: str, environ: Mapping[str, str] | None = None
) -> str:
    """Resolve a row's ``source_url``/``target_url`` or raise a :class:`ConfigError` naming it."""
    try:
        return resolve_reference(ref, environ)
    except BadReference as exc:
        raise ConfigError(
            f"{role} connection: {exc}",
            pipeline=pipeline,
            fix=f"set {role}_url to a postgresql:// URL or env:VAR with VAR exported to Dagster",
        ) from None


def connect(
    url: str,
    *,
    pipeline: str | None = None,
    role: str = "database",
    autocommit: bool = False,
    connect_timeout: int = 10,
    session: bool = False,
    **kwargs: Any,
) -> psycopg.Connection[Any]:
    """Connect to a resolved libpq URL; failures become :class:`ConnectError`, URL redacted.

    ``session=True`` applies :data:`SESSION_SETTINGS` (:func:`set_session`) before returning, so
    the caller's first statement already sees them; the URL's own ``options`` stay untouched.
    """
    try:
        conn = psycopg.connect(
            url,
            autocommit=autocommit,
            connect_timeout=connect_timeout,
            application_name=f"{APPLICATION_NAME}:{pipeline or role}",
            **kwargs,
        )
    except psycopg.OperationalError as exc:
        reason = first_line(scrub(str(exc)))
        fix = f"check the {role} host, port, database, user and password"
        if "permission denied for database" in reason:
            # The login worked; only the CONNECT privilege is missing (docs/security.md).
            fix = f"GRANT CONNECT ON DATABASE <that database> TO the {role} role"
        raise ConnectError(
            f"cannot connect to {role} {redact_url(url)}: {reason}", pipeline=pipeline, fix=fix
        ) from None
    if session:
        try:
            set_session(conn)
            if not conn.autocommit:
                conn.commit()
        except BaseException:
            conn.close()
            raise
    return conn


def set_session(conn: psycopg.Connection[Any]) -> None:
    """Apply :data:`SESSION_SETTINGS` to an open session (like ``SET``, for the whole session).

    For sessions opened without them (the full load's coordinator, whose open transaction this
    leaves open: the caller commits): the same values as :data:`SESSION_OPTIONS`.
    """
    for name, value in SESSION_SETTINGS:
        conn.execute("SELECT set_config(%s, %s, false)", (name, value))


def first_line(text: str) -> str:
    """Driver messages span lines (DETAIL, HINT); rows and logs want the first meaningful one."""
    for raw in text.strip().splitlines():
        line = raw.strip()
        if line:
            return line
    return text.strip()
