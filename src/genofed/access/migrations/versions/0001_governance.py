"""Governance tables: applications, their events and datasets, visas, audit chain and its head.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_GENESIS = "0" * 64


def upgrade() -> None:
    when = sa.DateTime(timezone=True)
    op.create_table(
        "applications",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("applicant_issuer", sa.String(500), nullable=False),
        sa.Column("applicant_subject", sa.String(255), nullable=False),
        sa.Column("purpose_terms", sa.JSON(), nullable=False),
        sa.Column("purpose_diseases", sa.JSON(), nullable=False),
        sa.Column("commercial", sa.Boolean(), nullable=False),
        sa.Column("purpose_text", sa.Text(), nullable=False),
        sa.Column("duration_days", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", when, nullable=False),
        sa.Column("updated_at", when, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_applications"),
    )
    op.create_index("ix_applications_state", "applications", ["state"])
    op.create_index("ix_applications_applicant", "applications",
                    ["applicant_issuer", "applicant_subject"])

    op.create_table(
        "application_datasets",
        sa.Column("application_id", sa.String(40), nullable=False),
        sa.Column("dataset_id", sa.String(128), nullable=False),
        sa.Column("assessment", sa.String(16), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["application_id"], ["applications.id"],
                                name="fk_application_datasets_application_id_applications"),
        sa.PrimaryKeyConstraint("application_id", "dataset_id", name="pk_application_datasets"),
    )

    op.create_table(
        "application_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("application_id", sa.String(40), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("actor", sa.String(800), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("at", when, nullable=False),
        sa.ForeignKeyConstraint(["application_id"], ["applications.id"],
                                name="fk_application_events_application_id_applications"),
        sa.PrimaryKeyConstraint("id", name="pk_application_events"),
        sa.UniqueConstraint("application_id", "seq", name="uq_application_events_application_id"),
    )
    op.create_index("ix_application_events_application_id", "application_events",
                    ["application_id"])

    op.create_table(
        "visas",
        sa.Column("jti", sa.String(64), nullable=False),
        sa.Column("application_id", sa.String(40), nullable=False),
        sa.Column("dataset_id", sa.String(128), nullable=False),
        sa.Column("subject_issuer", sa.String(500), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("issued_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at", when, nullable=True),
        sa.Column("revoked_by", sa.String(800), nullable=True),
        sa.Column("token", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["application_id"], ["applications.id"],
                                name="fk_visas_application_id_applications"),
        sa.PrimaryKeyConstraint("jti", name="pk_visas"),
        sa.UniqueConstraint("application_id", "dataset_id", name="uq_visas_application_id"),
    )
    op.create_index("ix_visas_dataset_id", "visas", ["dataset_id"])
    op.create_index("ix_visas_subject", "visas", ["subject_issuer", "subject"])

    op.create_table(
        "audit_records",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("dataset_id", sa.String(128), nullable=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("decision", sa.String(8), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("seal", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_records"),
    )

    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("seal", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_head"),
    )
    # The head row exists from the start, so appenders only ever lock and update it.
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": _GENESIS, "seal": ""}])


def downgrade() -> None:
    for table in ("audit_head", "audit_records", "visas", "application_events",
                  "application_datasets", "applications"):
        op.drop_table(table)
