"""Ledger indexes for the exposure report and the purge: disclosures by appointment (who read a
patient's appointments; deleting an appointment sets them NULL), patient windows by time.

Revision ID: 313fa5e0053c
Revises: a95cab164beb
Create Date: 2026-11-29 01:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "313fa5e0053c"
down_revision: str | None = "a95cab164beb"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_disclosures_appointment", "disclosures", ["appointment_id"])
    op.create_index("ix_patient_disclosures_disclosed_at", "patient_disclosures", ["disclosed_at"])


def downgrade() -> None:
    op.drop_index("ix_patient_disclosures_disclosed_at", table_name="patient_disclosures")
    op.drop_index("ix_disclosures_appointment", table_name="disclosures")
