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
    **kwargs: Any,
) -> psycopg.Connection[Any]:
    """Connect to a resolved libpq URL; failures become :class:`ConnectError`, URL redacted."""
    try:
        return psycopg.connect(
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


def first_line(text: str) -> str:
    """Driver messages span lines (DETAIL, HINT); rows and logs want the first meaningful one."""
    for raw in text.strip().splitlines():
        line = raw.strip()
        if line:
            return line
    return text.strip()
