"""The change limit: appointments a partner cancelled or rescheduled without having booked them.

A stolen key with appointments:write could cancel a practice's whole agenda, a few points a write,
with no alert (api/protection/disruption.py). Each such change is a row, per partner and practice,
counted over a day; rows past the day are deleted as new ones come, so the table stays small.

Revision ID: 5d1e7a2c9f30
Revises: 8b570ec4b19a
Create Date: 2026-11-30 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5d1e7a2c9f30"
down_revision: str | None = "8b570ec4b19a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "partner_changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("partner_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("practice_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["partner_id"], ["partners.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["practice_id"], ["practices.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_partner_changes_partner_practice_at", "partner_changes", ["partner_id", "practice_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_partner_changes_partner_practice_at", table_name="partner_changes")
    op.drop_table("partner_changes")
