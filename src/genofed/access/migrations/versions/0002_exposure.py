"""The exposure ledger: membership evidence spent per individual, and the answers it bought.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "exposure_spent",
        sa.Column("individual", sa.String(255), nullable=False),
        sa.Column("spent", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("individual", name="pk_exposure_spent"),
    )
    op.create_table(
        "released_answers",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_released_answers"),
    )


def downgrade() -> None:
    op.drop_table("released_answers")
    op.drop_table("exposure_spent")
