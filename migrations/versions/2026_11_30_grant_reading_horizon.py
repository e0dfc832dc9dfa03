"""A reading horizon per grant (days back, days ahead) and an expiring permission to read history;
the partner that created a patient record with a booking.

Patient identity, contact and the medical reason are readable only near the request time
(api/reading_horizon.py, authz/fields.polar). Existing grants get the default horizon (1 day back,
30 ahead) and no history permission. Patients created before this revision count as the practice's.

Revision ID: 8e41c7a2f5d3
Revises: 9b3e7d21c4a8
Create Date: 2026-11-30 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "8e41c7a2f5d3"
down_revision: str | None = "9b3e7d21c4a8"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As api.data.models: BIGINT keys on PostgreSQL, INTEGER on SQLite; UTCDateTime.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Plain ADD COLUMNs: SQLite keeps the table (and its grants_version triggers) as it is.
    with op.batch_alter_table("grants") as batch:
        batch.add_column(
            sa.Column("days_back", sa.Integer(), server_default="1", nullable=False,
                      comment="Reading horizon: days before the request")
        )
        batch.add_column(
            sa.Column("days_ahead", sa.Integer(), server_default="30", nullable=False,
                      comment="Reading horizon: days after the request")
        )
        batch.add_column(
            sa.Column("history_until", UTC_TIME, nullable=True,
                      comment="Reading history (outside the horizon) is allowed until then; NULL: never")
        )
    with op.batch_alter_table("patients") as batch:
        batch.add_column(
            sa.Column("source_partner_id", BIG_ID, nullable=True,
                      comment="Partner that created the record with a booking; NULL when the practice did")
        )
        batch.create_foreign_key("fk_patients_source_partner_id_partners", "partners", ["source_partner_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("patients") as batch:
        batch.drop_constraint("fk_patients_source_partner_id_partners", type_="foreignkey")
        batch.drop_column("source_partner_id")
    # Not a batch on grants: SQLite would copy the table and lose its grants_version triggers.
    # (SQLite drops a plain column in place since 3.35.)
    for column in ("history_until", "days_ahead", "days_back"):
        op.execute(f"ALTER TABLE grants DROP COLUMN {column}")
