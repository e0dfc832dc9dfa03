"""Who last set an appointment's time: a partner's booking or rescheduling, or the practice (NULL).

Only times the practice set count for the reading horizon (api/services/horizon.py) and for the
practice's activity baseline (api/protection/activity.py): a partner that moves a practice's
appointment near today opens nothing by it. Existing appointments take their creator: a partner's
earlier reschedule of a practice appointment was not recorded and cannot be told apart.

Revision ID: 5d2a9c71e0b4
Revises: 8e3b51d07a2c
Create Date: 2026-11-30 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5d2a9c71e0b4"
down_revision: str | None = "8e3b51d07a2c"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As api.data.models: BIGINT keys on PostgreSQL, INTEGER on SQLite.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # A batch on appointments only (no triggers there); grants and partners are left as they are.
    with op.batch_alter_table("appointments") as batch:
        batch.add_column(sa.Column(
            "time_set_by_partner_id", BIG_ID, nullable=True,
            comment="Partner that last set its time (booked or rescheduled); NULL when the practice did",
        ))
        batch.create_foreign_key(
            "fk_appointments_time_set_by_partner_id_partners", "partners", ["time_set_by_partner_id"], ["id"]
        )
    op.execute("UPDATE appointments SET time_set_by_partner_id = source_partner_id")


def downgrade() -> None:
    with op.batch_alter_table("appointments") as batch:
        batch.drop_constraint("fk_appointments_time_set_by_partner_id_partners", type_="foreignkey")
        batch.drop_column("time_set_by_partner_id")
