"""An index for "is this patient inside the reading horizon": appointments by (patient, practice, start).

The patients read (api/services/horizon.py `patient_inside`, an EXISTS per patient) looked for
the patient's appointments in the practice's horizon. Without statistics SQLite's planner took the
index on (practice, start), which walks every appointment of the practice in the horizon for each
patient: 8 ms for a 50-row page on the medium data set, growing with the practice. With this index
the lookup is by patient first (0.3 ms). It replaces the index on `patient_id` alone, its prefix.

Revision ID: 2cd56bcd0d8d
Revises: 7c57b6c80102
Create Date: 2026-11-30 07:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "2cd56bcd0d8d"
down_revision: str | None = "7c57b6c80102"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_appointments_patient_practice_starts", "appointments", ["patient_id", "practice_id", "starts_at"]
    )
    op.drop_index("ix_appointments_patient_id", table_name="appointments")


def downgrade() -> None:
    op.create_index("ix_appointments_patient_id", "appointments", ["patient_id"])
    op.drop_index("ix_appointments_patient_practice_starts", table_name="appointments")
