"""Settings read from the environment when asked for, never at import time."""

import os
from collections.abc import Mapping
from dataclasses import dataclass

CONTROL_DB_URL_VAR = "CDC_CONTROL_DB_URL"
WEBSERVER_URL_VAR = "CDC_DAGSTER_WEBSERVER_URL"
#: Where ``dagster dev`` and ``dagster-webserver`` listen by default.
DEFAULT_WEBSERVER_URL = "http://127.0.0.1:3000"


class SettingError(ValueError):
    """A required setting is missing or malformed; the message names the variable."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingError(f"{name} must be >= {minimum}, got {value}")
    return value


def control_db_url(environ: Mapping[str, str] | None = None) -> str:
    """SQLAlchemy URL of the control database (``CDC_CONTROL_DB_URL``)."""
    env = os.environ if environ is None else environ
    url = env.get(CONTROL_DB_URL_VAR, "").strip()
    if not url:
        raise SettingError(
            f"{CONTROL_DB_URL_VAR} is not set: export it, e.g. "
            "postgresql+psycopg://user@host:5432/cdc"
        )
    return url


def dagster_webserver_url(environ: Mapping[str, str] | None = None) -> str:
    """Base URL of the Dagster webserver (``CDC_DAGSTER_WEBSERVER_URL``), no trailing slash.

    The definitions sync and the CLI ask it to reload the code location after the control table
    changed; unset, it is ``dagster dev``'s default address.
    """
    env = os.environ if environ is None else environ
    return (env.get(WEBSERVER_URL_VAR, "").strip() or DEFAULT_WEBSERVER_URL).rstrip("/")


@dataclass(frozen=True, slots=True)
class Settings:
    """Tunables; each has an environment variable so deployments change them without code."""

    sensor_interval_s: int = 5
    reconcile_interval_s: int = 30
    full_load_workers: int = 0  # 0 = one per CPU core, at least 2
    split_rows_threshold: int = 200_000
    verify_checksums: bool = False
    max_runtime_s: int = 6 * 3600
    cdc_batch_max_changes: int = 500_000
    lag_warn_bytes: int = 64 * 1024 * 1024
    lag_fail_bytes: int = 1024 * 1024 * 1024
    cdc_retry_max_s: int = 15 * 60
    idle_lag_interval_s: int = 10 * 60
    run_retention_days: int = 14  # 0 = keep every run for ever
    cdc_commit_interval_ms: int = 250
    cdc_materialize_every_s: int = 60
    cdc_stream_max_age_s: int = 24 * 3600
    cdc_heartbeat_s: int = 2
    cdc_heartbeat_timeout_s: int = 30
    cdc_stream_retry_s: int = 120

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Read every ``CDC_*`` tunable; unknown or unset ones keep their defaults."""
        env = os.environ if environ is None else environ
        return cls(
            sensor_interval_s=_int(env, "CDC_SENSOR_INTERVAL_S", 5, 1),
            reconcile_interval_s=_int(env, "CDC_RECONCILE_INTERVAL_S", 30, 1),
            full_load_workers=_int(env, "CDC_FULL_LOAD_WORKERS", 0, 0),
            split_rows_threshold=_int(env, "CDC_SPLIT_ROWS_THRESHOLD", 200_000, 1),
            verify_checksums=env.get("CDC_VERIFY_CHECKSUMS", "").lower() in ("1", "true", "yes"),
            max_runtime_s=_int(env, "CDC_MAX_RUNTIME_S", 6 * 3600, 0),
            cdc_batch_max_changes=_int(env, "CDC_BATCH_MAX_CHANGES", 500_000, 1),
            lag_warn_bytes=_int(env, "CDC_LAG_WARN_BYTES", 64 * 1024 * 1024, 0),
            lag_fail_bytes=_int(env, "CDC_LAG_FAIL_BYTES", 1024 * 1024 * 1024, 0),
            cdc_retry_max_s=_int(env, "CDC_RETRY_MAX_S", 15 * 60, 60),
            idle_lag_interval_s=_int(env, "CDC_IDLE_LAG_INTERVAL_S", 10 * 60, 30),
            run_retention_days=_int(env, "CDC_RUN_RETENTION_DAYS", 14, 0),
            cdc_commit_interval_ms=_int(env, "CDC_COMMIT_INTERVAL_MS", 250, 0),
            cdc_materialize_every_s=_int(env, "CDC_MATERIALIZE_EVERY_S", 60, 0),
            cdc_stream_max_age_s=_int(env, "CDC_STREAM_MAX_AGE_S", 24 * 3600, 10),
            cdc_heartbeat_s=_int(env, "CDC_HEARTBEAT_S", 2, 1),
            cdc_heartbeat_timeout_s=_int(env, "CDC_HEARTBEAT_TIMEOUT_S", 30, 5),
            cdc_stream_retry_s=_int(env, "CDC_STREAM_RETRY_S", 120, 0),
        )

    @property
    def workers(self) -> int:
        """Effective full-load parallelism: the setting, or one worker per core (min 2)."""
        if self.full_load_workers > 0:
            return self.full_load_workers
        return max(2, os.cpu_count() or 2)
