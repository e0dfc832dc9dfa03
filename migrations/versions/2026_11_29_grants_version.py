"""A version per partner, bumped by the database on every change to its grants: the API keeps each
partner's grants between requests and reads this version with the key, so a change to a grant
(scopes, dates, revocation, by the CLI or by hand in SQL) reaches every worker on its next request.

Revision ID: 6c1f0e2b9d47
Revises: 313fa5e0053c
Create Date: 2026-11-29 10:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "6c1f0e2b9d47"
down_revision: str | None = "313fa5e0053c"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BUMP = "UPDATE partners SET grants_version = grants_version + 1 WHERE id IN ({partners})"
SQLITE_TRIGGERS = {
    "grants_version_on_insert": ("INSERT", "NEW.partner_id"),
    "grants_version_on_update": ("UPDATE", "OLD.partner_id, NEW.partner_id"),
    "grants_version_on_delete": ("DELETE", "OLD.partner_id"),
}
POSTGRESQL_FUNCTION = f"""
CREATE FUNCTION bump_grants_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN {BUMP.format(partners="NEW.partner_id")};
  ELSIF TG_OP = 'DELETE' THEN {BUMP.format(partners="OLD.partner_id")};
  ELSE {BUMP.format(partners="OLD.partner_id, NEW.partner_id")};
  END IF;
  RETURN NULL;
END $$
"""


def upgrade() -> None:
    with op.batch_alter_table("partners") as batch:
        batch.add_column(
            sa.Column("grants_version", sa.Integer(), server_default="0", nullable=False,
                      comment="Bumped by a trigger on every change to the partner's grants")
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRESQL_FUNCTION)
        op.execute(
            "CREATE TRIGGER grants_version AFTER INSERT OR UPDATE OR DELETE ON grants "
            "FOR EACH ROW EXECUTE FUNCTION bump_grants_version()"
        )
    else:
        for name, (event, partners) in SQLITE_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} AFTER {event} ON grants BEGIN {BUMP.format(partners=partners)}; END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER grants_version ON grants")
        op.execute("DROP FUNCTION bump_grants_version()")
    else:
        for name in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER {name}")
    with op.batch_alter_table("partners") as batch:
        batch.drop_column("grants_version")
