"""Frozen views of control rows handed to the other layers (no SQLAlchemy objects leak out)."""

from dataclasses import dataclass
from datetime import datetime

from cdc_assets.asset_keys import Key, internal_collision, pipeline_prefix, prefix_problem
from cdc_assets.control.models import Pipeline, PipelineEventRecord
from cdc_assets.domain import (
    MAX_IDENTIFIER_BYTES,
    CdcStatus,
    FullLoadStatus,
    InvalidName,
    Lsn,
    Mode,
    Phase,
    PipelineSpec,
    TableRef,
    Writer,
    target_collision,
)
from cdc_assets.errors import ConfigError


@dataclass(frozen=True, slots=True)
class PipelineRow:
    """Every column of one ``public.pipelines`` row, typed; timestamps are timezone-aware."""

    id: int
    name: str
    source_url: str
    target_url: str
    tables: tuple[TableRef, ...]
    target_schema: str
    mode: Mode
    enabled: bool
    full_load_status: FullLoadStatus
    full_load_started_at: datetime | None
    full_load_completed_at: datetime | None
    full_load_rows: int | None
    full_load_run_id: str | None
    full_load_run_created_at: datetime | None
    full_load_authority: Writer | None
    cdc_status: CdcStatus
    cdc_lsn: Lsn | None
    cdc_lag_bytes: int | None
    cdc_progress_at: datetime | None
    cdc_run_id: str | None
    cdc_run_created_at: datetime | None
    cdc_authority: Writer | None
    last_run_id: str | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    asset_key_prefix: tuple[str, ...] | None = None
    cdc_lag_seconds: float | None = None
    cdc_heartbeat_at: datetime | None = None
    config_error: str | None = None
    """Why the row cannot be run (a hand-written bad table name or target schema), else ``None``.

    A bad row must not break reading the others (``pipeline list``, the sensors): it is loaded
    with the tables that parse, and only :attr:`spec` (what a run needs) refuses it.
    """

    @property
    def key_prefix(self) -> Key:
        """The asset key prefix of the row's tables (``asset_keys.py``: default, the name)."""
        return pipeline_prefix(self.name, self.asset_key_prefix)

    @property
    def spec(self) -> PipelineSpec:
        """What the row says to do, for the engines (URLs still unresolved).

        Raises:
            ConfigError: the row holds a value no run can use (see :attr:`config_error`); the run
                that asked fails with this message, which the sensors copy into ``last_error``.
        """
        if self.config_error is not None:
            raise ConfigError(
                self.config_error,
                pipeline=self.name,
                fix="UPDATE public.pipelines SET tables = ARRAY['schema.table', ...] "
                "(or target_schema) for this row",
            )
        return PipelineSpec(
            name=self.name,
            source_url=self.source_url,
            target_url=self.target_url,
            tables=self.tables,
            target_schema=self.target_schema,
            mode=self.mode,
            enabled=self.enabled,
            id=self.id,
        )

    @classmethod
    def from_model(cls, p: Pipeline) -> "PipelineRow":
        """Copy a loaded ORM object; statuses arrive as enums already (see models.py)."""
        tables, config_error = _tables(p)
        return cls(
            id=p.id,
            name=p.name,
            source_url=p.source_url,
            target_url=p.target_url,
            tables=tables,
            target_schema=p.target_schema,
            mode=Mode(p.mode),
            enabled=p.enabled,
            full_load_status=FullLoadStatus(p.full_load_status),
            full_load_started_at=p.full_load_started_at,
            full_load_completed_at=p.full_load_completed_at,
            full_load_rows=p.full_load_rows,
            full_load_run_id=p.full_load_run_id,
            full_load_run_created_at=p.full_load_run_created_at,
            full_load_authority=_writer(p.full_load_authority),
            cdc_status=CdcStatus(p.cdc_status),
            cdc_lsn=Lsn(p.cdc_lsn) if p.cdc_lsn else None,
            cdc_lag_bytes=p.cdc_lag_bytes,
            cdc_progress_at=p.cdc_progress_at,
            cdc_run_id=p.cdc_run_id,
            cdc_run_created_at=p.cdc_run_created_at,
            cdc_authority=_writer(p.cdc_authority),
            last_run_id=p.last_run_id,
            last_error=p.last_error,
            created_at=p.created_at,
            updated_at=p.updated_at,
            asset_key_prefix=tuple(p.asset_key_prefix) if p.asset_key_prefix is not None else None,
            cdc_lag_seconds=p.cdc_lag_seconds,
            cdc_heartbeat_at=p.cdc_heartbeat_at,
            config_error=config_error,
        )


@dataclass(frozen=True, slots=True)
class PipelineEvent:
    """One row of ``public.pipeline_events``: an accepted status change."""

    id: int
    pipeline_id: int | None
    pipeline: str
    run_id: str | None
    phase: Phase
    old_status: str | None
    new_status: str
    writer: Writer
    message: str | None
    created_at: datetime

    @classmethod
    def from_model(cls, e: PipelineEventRecord) -> "PipelineEvent":
        """Copy a loaded ORM object."""
        return cls(
            id=e.id,
            pipeline_id=e.pipeline_id,
            pipeline=e.pipeline,
            run_id=e.run_id,
            phase=Phase(e.phase),
            old_status=e.old_status,
            new_status=e.new_status,
            writer=Writer(e.writer),
            message=e.message,
            created_at=e.created_at,
        )


def _tables(p: Pipeline) -> tuple[tuple[TableRef, ...], str | None]:
    """The tables that parse, and the first problem of the row (rows may be written by hand)."""
    parsed: list[TableRef] = []
    problems: list[str] = []
    for text in p.tables or ():
        try:
            parsed.append(TableRef.parse(text))
        except InvalidName as exc:
            problems.append(str(exc))
    if not p.tables:
        problems.append("no tables listed")
    displays = [t.display for t in parsed]
    dupes = sorted({d for d in displays if displays.count(d) > 1})
    if dupes:
        problems.append(f"table {dupes[0]} is listed twice")
    collision = target_collision(parsed)
    if collision is not None:
        problems.append(collision)
    collision = internal_collision(parsed)
    if collision is not None:
        problems.append(collision)
    if p.asset_key_prefix is not None:
        bad_prefix = prefix_problem(p.asset_key_prefix)
        if bad_prefix is not None:
            problems.append(bad_prefix)
    if not (p.target_schema or "").strip():
        problems.append("target_schema is empty")
    elif "\x00" in p.target_schema or len(p.target_schema.encode()) > MAX_IDENTIFIER_BYTES:
        problems.append(f"invalid target_schema {p.target_schema!r}")
    unique = tuple(dict.fromkeys(parsed))
    return unique, (problems[0] if problems else None)


def _writer(value: str | None) -> Writer | None:
    return Writer(value) if value else None
