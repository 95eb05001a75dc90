"""SQLAlchemy models of ``public.pipelines`` and ``public.pipeline_events`` (design.md section 3).

The migrations in ``control/migrations`` create the schema; these models only map it, so the enum
types are declared with ``create_type=False``. Status enums map to the Python enums of
``cdc_assets.domain`` by value, both ways, so a row read back is ``FullLoadStatus.COMPLETED`` and
not a bare string (the seed's enum-conversion failures came from mapping names and labels loosely).
"""

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Identity,
    Index,
    MetaData,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, ENUM
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from cdc_assets.domain import CdcStatus, FullLoadStatus, Mode, Writer

SCHEMA = "public"
NAME_CHECK = "name ~ '^[a-z][a-z0-9_]{0,47}$'"
WRITERS = tuple(w.value for w in Writer)


def _values(enum_cls: type[FullLoadStatus] | type[CdcStatus]) -> list[str]:
    return [member.value for member in enum_cls]


full_load_status_type = ENUM(
    FullLoadStatus,
    name="full_load_status",
    schema=SCHEMA,
    create_type=False,
    values_callable=_values,
    validate_strings=True,
)
cdc_status_type = ENUM(
    CdcStatus,
    name="cdc_status",
    schema=SCHEMA,
    create_type=False,
    values_callable=_values,
    validate_strings=True,
)


class Base(DeclarativeBase):
    """Declarative base; the naming convention gives constraints stable names for migrations."""

    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


def _writer_check(column: str) -> str:
    allowed = ", ".join(f"'{w}'" for w in WRITERS)
    return f"{column} IS NULL OR {column} IN ({allowed})"


class Pipeline(Base):
    """One pipeline: what to copy where, and the status of its full load and its CDC."""

    __tablename__ = "pipelines"
    __table_args__ = (
        CheckConstraint(NAME_CHECK, name="name_pattern"),
        CheckConstraint(
            f"mode IN ('{Mode.FULL_LOAD.value}', '{Mode.FULL_LOAD_AND_CDC.value}')", name="mode"
        ),
        CheckConstraint("cardinality(tables) > 0", name="tables_not_empty"),
        CheckConstraint(_writer_check("full_load_authority"), name="full_load_authority"),
        CheckConstraint(_writer_check("cdc_authority"), name="cdc_authority"),
        {"schema": SCHEMA},
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    source_url: Mapped[str] = mapped_column(Text)
    target_url: Mapped[str] = mapped_column(Text)
    tables: Mapped[list[str]] = mapped_column(ARRAY(Text))
    target_schema: Mapped[str] = mapped_column(Text, server_default=text("'public'"))
    mode: Mapped[str] = mapped_column(Text, server_default=text("'full_load_and_cdc'"))
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    asset_key_prefix: Mapped[list[str] | None] = mapped_column(ARRAY(Text))

    full_load_status: Mapped[FullLoadStatus] = mapped_column(
        full_load_status_type, server_default=text("'NOT_STARTED'")
    )
    full_load_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    full_load_completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    full_load_rows: Mapped[int | None] = mapped_column(BigInteger)
    full_load_run_id: Mapped[str | None] = mapped_column(Text)
    full_load_run_created_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    full_load_authority: Mapped[str | None] = mapped_column(Text)

    cdc_status: Mapped[CdcStatus] = mapped_column(
        cdc_status_type, server_default=text("'NOT_STARTED'")
    )
    cdc_lsn: Mapped[str | None] = mapped_column(Text)
    cdc_lag_bytes: Mapped[int | None] = mapped_column(BigInteger)
    cdc_progress_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cdc_lag_seconds: Mapped[float | None] = mapped_column(Double)
    cdc_heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cdc_run_id: Mapped[str | None] = mapped_column(Text)
    cdc_run_created_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cdc_authority: Mapped[str | None] = mapped_column(Text)

    last_run_id: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("now()")
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("now()")
    )


class PipelineEventRecord(Base):
    """One accepted status change.

    ``pipeline_id`` is set to NULL when the pipeline is removed (``ON DELETE SET NULL``) and
    ``pipeline`` keeps its name, so the history of removed pipelines survives for audits.
    """

    __tablename__ = "pipeline_events"
    __table_args__ = (
        CheckConstraint("phase IN ('full_load', 'cdc')", name="phase"),
        CheckConstraint(_writer_check("writer"), name="writer"),
        Index(None, "pipeline_id", "id"),
        {"schema": SCHEMA},
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    pipeline_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey(f"{SCHEMA}.pipelines.id", ondelete="SET NULL")
    )
    pipeline: Mapped[str] = mapped_column(Text)
    run_id: Mapped[str | None] = mapped_column(Text)
    phase: Mapped[str] = mapped_column(Text)
    old_status: Mapped[str | None] = mapped_column(Text)
    new_status: Mapped[str] = mapped_column(Text)
    writer: Mapped[str] = mapped_column(Text)
    message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("clock_timestamp()")
    )
