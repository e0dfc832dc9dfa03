"""Policy releases: each policy that passed `partner-api policy check` and was put in force with
`partner-api policy reload` (or SIGHUP, or `serve` at start), with its .polar texts.

The server's workers load the latest release on their next request (api/http/policy_in_force.py):
what was checked is exactly what is loaded, on every worker and host sharing the database.

Revision ID: 2892e161ad70
Revises: 5d2a9c71e0b4
Create Date: 2026-11-30 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "2892e161ad70"
down_revision: str | None = "5d2a9c71e0b4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As api.data.models: BIGINT keys on PostgreSQL, INTEGER on SQLite; UTCDateTime.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "policy_releases",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("digest", sa.String(64), nullable=False, comment="SHA-256 of the texts, to tell a change"),
        sa.Column("sources", sa.JSON(), nullable=False, comment="File name -> .polar text, as checked"),
        sa.Column("directory", sa.String(500), nullable=False, comment="Where the texts were read"),
        sa.Column("released_at", UTC_TIME, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("policy_releases")
