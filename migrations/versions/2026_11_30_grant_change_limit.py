"""A grant's explicit change limit: appointments it did not book the partner may change per 24 h.

The practice's own software may legitimately cancel more than the computed limit (a practitioner's
week of absence): the operator sets the grant's limit (`partner-api grant limits --changes-per-day`),
as `max_patients_per_window` does for the distinct-patient budget. NULL keeps the computed one.

Revision ID: 0b7f3c6e2a41
Revises: 5d1e7a2c9f30
Create Date: 2026-11-30 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0b7f3c6e2a41"
down_revision: str | None = "5d1e7a2c9f30"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "grants",
        sa.Column(
            "max_changes_per_day",
            sa.Integer(),
            nullable=True,
            comment="Appointments it did not book the partner may change per 24 h; NULL: sized from activity",
        ),
    )


def downgrade() -> None:
    # Not a batch: SQLite (3.35+) drops a column in place, where a batch would copy the table without
    # its triggers (the key cache's, api/identity/principal_cache.py).
    op.drop_column("grants", "max_changes_per_day")
