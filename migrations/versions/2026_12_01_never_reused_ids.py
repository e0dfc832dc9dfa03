"""On SQLite, practices, patients and appointments never give an id again (AUTOINCREMENT): the ledger
names them by id and keeps them when the record is deleted, and an id SQLite gave again after deleting
the highest row made the exposure report name a patient the partner was never shown. PostgreSQL's
sequences never reuse an id: nothing changes there.

The tables are rebuilt (with foreign keys off: api/data/migrate.py `run`). Ids deleted before this
revision above the highest kept cannot be known again: rows of the ledger naming them may already
name another record.

Revision ID: 8a4c1f2e7d63
Revises: 5d1e8a7c9b20
Create Date: 2026-12-01 01:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "8a4c1f2e7d63"
down_revision: str | None = "5d1e8a7c9b20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("practices", "patients", "appointments")


def upgrade() -> None:
    _rebuild(autoincrement=True)


def downgrade() -> None:
    _rebuild(autoincrement=False)


def _rebuild(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        with op.batch_alter_table(table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}):
            pass
