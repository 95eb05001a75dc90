"""pipelines.cdc_lag_seconds and cdc_heartbeat_at: the stream run's lag in time and its pulse.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add both nullable columns: NULL until a CDC run reports."""
    op.add_column(
        "pipelines", sa.Column("cdc_lag_seconds", sa.Double(), nullable=True), schema="public"
    )
    op.add_column(
        "pipelines",
        sa.Column("cdc_heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        schema="public",
    )


def downgrade() -> None:
    """Drop both columns."""
    op.drop_column("pipelines", "cdc_heartbeat_at", schema="public")
    op.drop_column("pipelines", "cdc_lag_seconds", schema="public")
