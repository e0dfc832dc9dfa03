"""A partner's access tokens can be required bound to a DPoP key (`partner require-dpop`): a bearer
token replays for its whole life.

Revision ID: 2b7e9d4c1a85
Revises: 8a4c1f2e7d63
Create Date: 2026-12-01 01:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "2b7e9d4c1a85"
down_revision: str | None = "8a4c1f2e7d63"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # An added column, not a batch: a rebuild of `partners` would drop the triggers on it (7c57b6c80102).
    op.add_column("partners", sa.Column(
        "dpop_required", sa.Boolean(), server_default=sa.text("false"), nullable=False,
        comment="Issue and serve its access tokens only bound to a DPoP key: no bearer token",
    ))  # fmt: skip


def downgrade() -> None:
    op.drop_column("partners", "dpop_required")  # SQLite's own DROP COLUMN: no rebuild either
