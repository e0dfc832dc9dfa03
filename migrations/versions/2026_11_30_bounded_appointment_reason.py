"""The medical reason of an appointment becomes bounded (VARCHAR(1000), was TEXT): the API takes it
in from partners, and every string it takes in has the size of its column as its limit.

Revision ID: 9b3e7d21c4a8
Revises: 6c1f0e2b9d47
Create Date: 2026-11-30 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9b3e7d21c4a8"
down_revision: str | None = "6c1f0e2b9d47"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COMMENT = "Medical motive: sensitive health data"


def upgrade() -> None:
    # SQLite cannot alter a column's type: batch mode rebuilds the table (PostgreSQL alters it in place).
    with op.batch_alter_table("appointments") as batch:
        batch.alter_column(
            "reason", type_=sa.String(1000), existing_type=sa.Text(), existing_nullable=True, existing_comment=COMMENT
        )


def downgrade() -> None:
    with op.batch_alter_table("appointments") as batch:
        batch.alter_column(
            "reason", type_=sa.Text(), existing_type=sa.String(1000), existing_nullable=True, existing_comment=COMMENT
        )
