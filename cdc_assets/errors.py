"""Typed errors that name the pipeline and are safe to store in ``last_error``.

Every error the product raises on purpose derives from :class:`CdcError`. Its message is built
from parts that never include a password (URLs are redacted before they get here, and the text is
scrubbed again), so ``for_row()`` can go to ``last_error``, Dagster metadata and logs as it is.
"""

from cdc_assets.secrets import scrub

MAX_ROW_ERROR = 2000


class CdcError(Exception):
    """Base class: a failure of one pipeline, explained for an operator."""

    kind = "error"
    transient_default = False
    """Whether an error of this class may heal by itself (a dropped connection, a restarting
    server): the stream run retries those inside the run for a bounded time
    (``CDC_STREAM_RETRY_S``) and fails at once on the others (a dropped column, a vanished slot)."""

    def __init__(
        self,
        message: str,
        *,
        pipeline: str | None = None,
        table: str | None = None,
        fix: str | None = None,
        transient: bool | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.transient = type(self).transient_default if transient is None else transient
        self.table = table
        self.fix = fix
        self.detail = scrub(message)
        super().__init__(self.for_row())

    def for_row(self) -> str:
        """One short, secret-free line for ``last_error``: pipeline, table, problem, fix."""
        parts = []
        if self.pipeline:
            parts.append(f"pipeline {self.pipeline!r}")
        if self.table:
            parts.append(f"table {self.table}")
        head = ", ".join(parts)
        text = f"{head}: {self.detail}" if head else self.detail
        if self.fix:
            text = f"{text} (fix: {self.fix})"
        # The fix and the table are free text too: scrub the whole line, not just the detail.
        return scrub(text)[:MAX_ROW_ERROR]


class ConfigError(CdcError):
    """The pipeline row or the settings are wrong (bad URL, missing env var, bad table name)."""

    kind = "config"


class ConnectError(CdcError):
    """A database could not be reached or refused the login."""

    kind = "connect"
    transient_default = True


class SourceError(CdcError):
    """The source cannot be read as the pipeline needs (missing table, privileges, wal_level)."""

    kind = "source"


class TargetError(CdcError):
    """The target cannot be written as the pipeline needs (missing schema, privileges)."""

    kind = "target"


class SchemaChangeError(CdcError):
    """The source schema changed in a way CDC cannot apply safely (dropped or retyped column)."""

    kind = "schema"


class ConsistencyError(CdcError):
    """A guarantee would be broken (slot missing or moved, watermark ahead of slot)."""

    kind = "consistency"


class ConcurrentRunError(CdcError):
    """Another run of the same pipeline holds the pipeline lock."""

    kind = "concurrent"


class PipelineNotFound(CdcError):
    """No row in ``public.pipelines`` has that name."""

    kind = "not_found"
