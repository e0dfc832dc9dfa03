"""One disclosure row per appointment, carrying its patient: `disclosures.patient_field_groups`.

A response showing an appointment with its patient wrote two rows (the appointment's, the patient's);
it now writes one, naming both, with the patient's groups in this column (api/ledger/access.py
`Disclosures.rows`). A row naming one record leaves it NULL, as every row written before this
revision does: they keep their meaning, so nothing is rewritten. On PostgreSQL the column added to
the partitioned parent is added to its monthly partitions.

Revision ID: 8b570ec4b19a
Revises: 2cd56bcd0d8d
Create Date: 2026-11-30 09:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "8b570ec4b19a"
down_revision: str | None = "2cd56bcd0d8d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("disclosures", sa.Column("patient_field_groups", sa.Integer(), nullable=True))


def downgrade() -> None:
    # Back to a row per record: a row naming an appointment and its patient gives the patient's part
    # to a row of its own before the column holding its groups goes (a patient erased since has none).
    op.execute(
        "INSERT INTO disclosures (access_id, at, partner_id, practice_id, appointment_id, patient_id, field_groups) "
        "SELECT access_id, at, partner_id, practice_id, NULL, patient_id, patient_field_groups FROM disclosures "
        "WHERE patient_field_groups IS NOT NULL AND patient_id IS NOT NULL"
    )
    op.execute("UPDATE disclosures SET patient_id = NULL WHERE patient_field_groups IS NOT NULL")
    op.drop_column("disclosures", "patient_field_groups")
