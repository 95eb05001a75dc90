"""pipelines.asset_key_prefix: overrides the default asset key prefix of a pipeline's tables.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the nullable column: NULL means the default prefix (the pipeline's name)."""
    op.add_column(
        "pipelines",
        sa.Column("asset_key_prefix", postgresql.ARRAY(sa.Text()), nullable=True),
        schema="public",
    )


def downgrade() -> None:
    """Drop the column (rows fall back to the default prefix)."""
    op.drop_column("pipelines", "asset_key_prefix", schema="public")
