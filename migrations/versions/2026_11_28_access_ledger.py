"""Access ledger: one row per request to /graphql, and one per record it disclosed (no personal data).

Revision ID: a95cab164beb
Revises: d155616e1c9c
Create Date: 2026-11-28 23:53:59.825783
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'a95cab164beb'
down_revision: str | None = 'd155616e1c9c'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "access_records",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("request_id", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("partner_id", BIG_ID, nullable=True),
        sa.Column("key_id", BIG_ID, nullable=True),
        sa.Column("key_prefix", sa.String(length=16), nullable=True, comment="As presented, even when unknown"),
        sa.Column("operation_name", sa.String(length=100), nullable=True),
        sa.Column("document_hash", sa.String(length=64), nullable=True, comment="SHA-256 of the query text"),
        sa.Column("outcome", sa.String(length=16), nullable=False, comment="served or refused"),
        sa.Column("error_code", sa.String(length=40), nullable=True, comment="Why refused, or the first error"),
        sa.Column("http_status", sa.Integer(), nullable=False),
        sa.Column("requested_cost", sa.Integer(), nullable=True),
        sa.Column("actual_cost", sa.Integer(), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("client_address", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["key_id"], ["partner_keys.id"], name=op.f("fk_access_records_key_id_partner_keys"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name=op.f("fk_access_records_partner_id_partners"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_records")),
        sa.UniqueConstraint("request_id", name=op.f("uq_access_records_request_id")),
    )
    op.create_index("ix_access_records_at", "access_records", ["at"], unique=False)
    op.create_index("ix_access_records_partner_at", "access_records", ["partner_id", "at"], unique=False)

    op.create_table(
        "disclosures",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("access_id", BIG_ID, nullable=False),
        sa.Column("practice_id", BIG_ID, nullable=False),
        sa.Column("appointment_id", BIG_ID, nullable=True),
        sa.Column("patient_id", BIG_ID, nullable=True),
        sa.Column("field_groups", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["access_id"],
            ["access_records.id"],
            name=op.f("fk_disclosures_access_id_access_records"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["appointment_id"],
            ["appointments.id"],
            name=op.f("fk_disclosures_appointment_id_appointments"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_disclosures_patient_id_patients"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["practice_id"], ["practices.id"], name=op.f("fk_disclosures_practice_id_practices"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_disclosures")),
    )
    op.create_index("ix_disclosures_access_id", "disclosures", ["access_id"], unique=False)
    op.create_index("ix_disclosures_patient", "disclosures", ["patient_id"], unique=False)
    op.create_index("ix_disclosures_practice", "disclosures", ["practice_id"], unique=False)


def downgrade() -> None:
    # Dropping a table drops its indexes.
    op.drop_table("disclosures")
    op.drop_table("access_records")
