"""Query budgets shared by every server process of a node: queries granted per caller and
window.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "query_counts",
        sa.Column("caller", sa.String(128), nullable=False),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("granted", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("caller", "window_start", name="pk_query_counts"),
    )


def downgrade() -> None:
    op.drop_table("query_counts")
