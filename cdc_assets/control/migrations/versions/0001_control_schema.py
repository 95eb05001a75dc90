"""Control schema: pipelines, pipeline_events, status enums, updated_at trigger.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FULL_LOAD_STATUSES = ("NOT_STARTED", "IN_PROGRESS", "COMPLETED", "FAILED")
CDC_STATUSES = ("NOT_STARTED", "ACTIVE", "FAILED", "STOPPED")
WRITERS = "'op', 'hook', 'sensor', 'reconciler', 'cli'"

full_load_status = postgresql.ENUM(
    *FULL_LOAD_STATUSES, name="full_load_status", schema="public", create_type=False
)
cdc_status = postgresql.ENUM(*CDC_STATUSES, name="cdc_status", schema="public", create_type=False)

# A trigger, not the ORM, moves updated_at: hand-made psql updates must move it too. The WHEN
# clause skips no-op updates, so a guarded UPDATE that changes nothing leaves the timestamp alone.
SET_UPDATED_AT = """
CREATE OR REPLACE FUNCTION public.cdc_assets_set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := clock_timestamp();
    RETURN NEW;
END;
$$
"""
TRIGGER = """
CREATE TRIGGER pipelines_set_updated_at
BEFORE UPDATE ON public.pipelines
FOR EACH ROW
WHEN (OLD.* IS DISTINCT FROM NEW.*)
EXECUTE FUNCTION public.cdc_assets_set_updated_at()
"""


def _ts(name: str, *, nullable: bool = True) -> "sa.Column[datetime]":
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _writer_check(column: str) -> str:
    return f"{column} IS NULL OR {column} IN ({WRITERS})"


def upgrade() -> None:
    """Create both tables, both enums and the trigger."""
    bind = op.get_bind()
    full_load_status.create(bind, checkfirst=False)
    cdc_status.create(bind, checkfirst=False)
    op.create_table(
        "pipelines",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("source_url", sa.Text, nullable=False),
        sa.Column("target_url", sa.Text, nullable=False),
        sa.Column("tables", postgresql.ARRAY(sa.Text), nullable=False),
        sa.Column("target_schema", sa.Text, nullable=False, server_default=sa.text("'public'")),
        sa.Column("mode", sa.Text, nullable=False, server_default=sa.text("'full_load_and_cdc'")),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.text("true")),
        sa.Column(
            "full_load_status",
            full_load_status,
            nullable=False,
            server_default=sa.text("'NOT_STARTED'"),
        ),
        _ts("full_load_started_at"),
        _ts("full_load_completed_at"),
        sa.Column("full_load_rows", sa.BigInteger),
        sa.Column("full_load_run_id", sa.Text),
        _ts("full_load_run_created_at"),
        sa.Column("full_load_authority", sa.Text),
        sa.Column(
            "cdc_status", cdc_status, nullable=False, server_default=sa.text("'NOT_STARTED'")
        ),
        sa.Column("cdc_lsn", sa.Text),
        sa.Column("cdc_lag_bytes", sa.BigInteger),
        _ts("cdc_progress_at"),
        sa.Column("cdc_run_id", sa.Text),
        _ts("cdc_run_created_at"),
        sa.Column("cdc_authority", sa.Text),
        sa.Column("last_run_id", sa.Text),
        sa.Column("last_error", sa.Text),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
        sa.PrimaryKeyConstraint("id", name="pk_pipelines"),
        sa.UniqueConstraint("name", name="uq_pipelines_name"),
        sa.CheckConstraint("name ~ '^[a-z][a-z0-9_]{0,47}$'", name="ck_pipelines_name_pattern"),
        sa.CheckConstraint("mode IN ('full_load', 'full_load_and_cdc')", name="ck_pipelines_mode"),
        sa.CheckConstraint("cardinality(tables) > 0", name="ck_pipelines_tables_not_empty"),
        sa.CheckConstraint(
            _writer_check("full_load_authority"), name="ck_pipelines_full_load_authority"
        ),
        sa.CheckConstraint(_writer_check("cdc_authority"), name="ck_pipelines_cdc_authority"),
        schema="public",
    )
    op.create_table(
        "pipeline_events",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), nullable=False),
        sa.Column("pipeline_id", sa.BigInteger),
        sa.Column("pipeline", sa.Text, nullable=False),
        sa.Column("run_id", sa.Text),
        sa.Column("phase", sa.Text, nullable=False),
        sa.Column("old_status", sa.Text),
        sa.Column("new_status", sa.Text, nullable=False),
        sa.Column("writer", sa.Text, nullable=False),
        sa.Column("message", sa.Text),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("clock_timestamp()"),
        ),
        sa.PrimaryKeyConstraint("id", name="pk_pipeline_events"),
        sa.ForeignKeyConstraint(
            ["pipeline_id"],
            ["public.pipelines.id"],
            name="fk_pipeline_events_pipeline_id",
            ondelete="SET NULL",
        ),
        sa.CheckConstraint("phase IN ('full_load', 'cdc')", name="ck_pipeline_events_phase"),
        sa.CheckConstraint(_writer_check("writer"), name="ck_pipeline_events_writer"),
        schema="public",
    )
    op.create_index(
        "ix_pipeline_events_pipeline_id_id",
        "pipeline_events",
        ["pipeline_id", "id"],
        schema="public",
    )
    op.execute(SET_UPDATED_AT)
    op.execute(TRIGGER)


def downgrade() -> None:
    """Drop everything this revision created (pipeline history included)."""
    op.drop_table("pipeline_events", schema="public")
    op.drop_table("pipelines", schema="public")
    op.execute("DROP FUNCTION IF EXISTS public.cdc_assets_set_updated_at()")
    cdc_status.drop(op.get_bind(), checkfirst=True)
    full_load_status.drop(op.get_bind(), checkfirst=True)
