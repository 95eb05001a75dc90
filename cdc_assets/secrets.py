"""Connection references and password hygiene.

A pipeline row holds either a libpq URL or ``env:VAR``; the URL is resolved only at run time, in the
process that connects, so rows can be added without secrets in them. Anything that may reach a log,
a row or Dagster metadata passes through :func:`redact_url` or :func:`scrub` first.
"""

import os
import re
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

ENV_PREFIX = "env:"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_URL_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2")

# user:password@ inside any URL-like text, and password=... in keyword/value conninfo strings.
_URL_PASSWORD = re.compile(r"(?P<pre>[a-z][a-z0-9+.\-]*://[^:/@\s]*):(?P<pw>[^@\s/]*)@", re.I)
_KV_PASSWORD = re.compile(r"(?P<pre>\bpassword\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|\S+)", re.I)
_QUERY_PASSWORD = re.compile(r"(?P<pre>[?&]password=)(?P<pw>[^&\s]*)", re.I)

_known_secrets: set[str] = set()


class BadReference(ValueError):
    """A connection reference that is neither a PostgreSQL URL nor ``env:VAR``."""


def remember_secret(secret: str) -> None:
    """Register a password so :func:`scrub` removes it even where it appears outside a URL."""
    if secret and len(secret) >= 3:
        _known_secrets.add(secret)


def check_reference(ref: str) -> str:
    """Validate a connection reference's form without resolving it; return it unchanged."""
    if not isinstance(ref, str) or not ref.strip():
        raise BadReference("empty connection reference")
    if ref.startswith(ENV_PREFIX):
        var = ref[len(ENV_PREFIX) :]
        if not _ENV_NAME.fullmatch(var):
            raise BadReference(f"invalid environment variable name in {ref!r}")
        return ref
    if any(c.isspace() for c in ref):
        raise BadReference(f"URL {redact_url(ref)!r} contains whitespace (percent-encode it)")
    try:
        parts = urlsplit(ref)
    except ValueError as exc:
        raise BadReference(f"unparsable URL {redact_url(ref)!r}: {exc}") from None
    if parts.scheme not in _URL_SCHEMES:
        raise BadReference(f"URL {redact_url(ref)!r} must start with postgresql:// (or be env:VAR)")
    try:
        port = parts.port
    except ValueError:
        raise BadReference(f"URL {redact_url(ref)!r} has an invalid port") from None
    if port is not None and not 0 < port < 65536:
        raise BadReference(f"URL {redact_url(ref)!r} has an invalid port")
    if any(c in ref for c in "\x00\n\r"):
        raise BadReference("URL contains control characters")
    return ref


def resolve_reference(ref: str, environ: Mapping[str, str] | None = None) -> str:
    """Turn a row's reference into a libpq URL (``postgresql://``), reading ``env:VAR`` now.

    SQLAlchemy-style schemes (``postgresql+psycopg``) are accepted and normalised, so one URL
    format serves the control DB setting and the pipeline rows.
    """
    env = os.environ if environ is None else environ
    check_reference(ref)
    if ref.startswith(ENV_PREFIX):
        var = ref[len(ENV_PREFIX) :]
        value = env.get(var)
        if value is None or not value.strip():
            raise BadReference(f"environment variable {var} is not set (referenced as {ref})")
        try:
            check_reference(value)
        except BadReference as exc:
            raise BadReference(f"environment variable {var}: {exc}") from None
        if value.startswith(ENV_PREFIX):
            raise BadReference(f"environment variable {var} refers to another env: reference")
        ref = value
    url = to_libpq_url(ref)
    pw = urlsplit(url).password
    if pw:
        remember_secret(pw)
    return url


def to_libpq_url(url: str) -> str:
    """Drop a SQLAlchemy driver suffix: ``postgresql+psycopg://`` -> ``postgresql://``."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme.startswith("postgresql+"):
        return "postgresql://" + rest
    return url


def redact_url(url: str) -> str:
    """The URL with its password replaced by ``***``; host, port, user and database stay."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return scrub(url)
    if parts.password is None:
        return scrub(url)
    netloc = parts.netloc
    userinfo, _, hostinfo = netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return scrub(urlunsplit(parts._replace(netloc=f"{user}:***@{hostinfo}")))


def scrub(text: str) -> str:
    """Remove anything that looks like a password from free text (errors from drivers included)."""
    text = _URL_PASSWORD.sub(lambda m: f"{m.group('pre')}:***@", text)
    text = _KV_PASSWORD.sub(lambda m: f"{m.group('pre')}***", text)
    text = _QUERY_PASSWORD.sub(lambda m: f"{m.group('pre')}***", text)
    for secret in _known_secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return text
