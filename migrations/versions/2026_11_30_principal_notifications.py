"""The workers' key cache is told at once of every change that can alter an authenticated key's
principal (api/identity/principal_cache.py): its key (anything but `last_used_at`, which requests
write every minute), its partner (status, budget, tokens_required, and the grants and documents
versions their own triggers bump), its grants, its trusted documents, and the policy releases.

PostgreSQL: the triggers `pg_notify('partner_api_principals', <partner id, or '*'>)`, delivered at
commit to each worker's listening connection. SQLite: they bump the one row of `principal_versions`,
which a cache hit reads. The table exists on both databases (PostgreSQL leaves it at 0).

Revision ID: 7c57b6c80102
Revises: 8caa10998681
Create Date: 2026-11-30 06:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7c57b6c80102"
down_revision: str | None = "8caa10998681"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHANNEL = "partner_api_principals"  # as api/identity/principal_cache.py (revisions do not import application code)
# Every column of partner_keys but last_used_at (tests/identity/test_principal_cache_triggers.py checks the list).
KEY_COLUMNS = (
    "id", "partner_id", "prefix", "secret_hash", "label", "created_at", "expires_at", "revoked_at",
    "quarantined_at", "mode",
)  # fmt: skip
# table -> (its partner's column, or None: every partner; UPDATE OF these columns only, or None: any)
WATCHED: dict[str, tuple[str | None, tuple[str, ...] | None]] = {
    "partner_keys": ("partner_id", KEY_COLUMNS),
    "partners": ("id", None),
    "grants": ("partner_id", None),
    "trusted_documents": ("partner_id", None),
    "policy_releases": (None, None),
}
POSTGRESQL_FUNCTION = f"""
CREATE FUNCTION notify_principals() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP <> 'INSERT' THEN
    PERFORM pg_notify('{CHANNEL}', COALESCE(to_jsonb(OLD) ->> TG_ARGV[0], '*'));
  END IF;
  IF TG_OP <> 'DELETE' THEN
    PERFORM pg_notify('{CHANNEL}', COALESCE(to_jsonb(NEW) ->> TG_ARGV[0], '*'));
  END IF;
  RETURN NULL;
END $$
"""
SQLITE_BUMP = "UPDATE principal_versions SET value = value + 1 WHERE id = 1"


def _update_of(columns: tuple[str, ...] | None) -> str:
    return f"UPDATE OF {', '.join(columns)}" if columns else "UPDATE"


def upgrade() -> None:
    op.create_table(
        "principal_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_principal_versions"),
    )
    op.execute("INSERT INTO principal_versions (id, value) VALUES (1, 0)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRESQL_FUNCTION)
        for table, (partner, columns) in WATCHED.items():
            op.execute(
                f"CREATE TRIGGER principals_changed AFTER INSERT OR {_update_of(columns)} OR DELETE ON {table} "
                f"FOR EACH ROW EXECUTE FUNCTION notify_principals('{partner or ''}')"
            )
    else:
        for table, (_, columns) in WATCHED.items():
            for event in ("INSERT", _update_of(columns), "DELETE"):
                name = f"principal_version_on_{table}_{event.split()[0].lower()}"
                op.execute(f"CREATE TRIGGER {name} AFTER {event} ON {table} BEGIN {SQLITE_BUMP}; END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in WATCHED:
            op.execute(f"DROP TRIGGER principals_changed ON {table}")
        op.execute("DROP FUNCTION notify_principals()")
    else:
        for table in WATCHED:
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER principal_version_on_{table}_{event}")
    op.drop_table("principal_versions")
