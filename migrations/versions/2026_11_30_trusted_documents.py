"""Trusted documents: the operations each partner registered from its build's manifest, a mode per
key (`trusted`: only those; `open`: any document), the document id in the access ledger, and a
version per partner, bumped by the database on every change to its documents, under which each
worker keeps them (as grants_version does for grants): a revoked document is refused by every
worker on the partner's next request.

Keys that exist at the upgrade stay `open`, as they were; new keys are `trusted` unless told.

Revision ID: 02fafd39984f
Revises: 2892e161ad70
Create Date: 2026-11-30 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "02fafd39984f"
down_revision: str | None = "2892e161ad70"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC = sa.DateTime(timezone=True)

BUMP = "UPDATE partners SET documents_version = documents_version + 1 WHERE id IN ({partners})"
SQLITE_TRIGGERS = {
    "documents_version_on_insert": ("INSERT", "NEW.partner_id"),
    "documents_version_on_update": ("UPDATE", "OLD.partner_id, NEW.partner_id"),
    "documents_version_on_delete": ("DELETE", "OLD.partner_id"),
}
POSTGRESQL_FUNCTION = f"""
CREATE FUNCTION bump_documents_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN {BUMP.format(partners="NEW.partner_id")};
  ELSIF TG_OP = 'DELETE' THEN {BUMP.format(partners="OLD.partner_id")};
  ELSE {BUMP.format(partners="OLD.partner_id, NEW.partner_id")};
  END IF;
  RETURN NULL;
END $$
"""


def upgrade() -> None:
    op.create_table(
        "trusted_documents",
        sa.Column("id", BigId, nullable=False),
        sa.Column("partner_id", BigId, nullable=False),
        sa.Column("document_id", sa.String(length=71), nullable=False, comment="sha256:<hex> of the exact text"),
        sa.Column("operation_name", sa.String(length=100), nullable=True),
        sa.Column("operation_type", sa.String(length=16), nullable=False, comment="query or mutation"),
        sa.Column("text", sa.Text(), nullable=False, comment="The document, exactly as the manifest holds it"),
        sa.Column("cost", sa.Integer(), nullable=False, comment="Worst-case cost, charged on every run"),
        sa.Column("fields", sa.Text(), nullable=False, comment='The "Type.field" names it reads, space-separated'),
        sa.Column("scopes", sa.Text(), nullable=False, comment="The scopes those fields need, space-separated"),
        sa.Column("manifest_format", sa.String(length=16), nullable=False, comment="codegen, relay or apollo"),
        sa.Column("registered_at", UTC, nullable=False),
        sa.Column("revoked_at", UTC, nullable=True),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name="fk_trusted_documents_partner_id_partners", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_trusted_documents"),
        sa.UniqueConstraint("partner_id", "document_id", name="uq_trusted_documents_partner_id"),
    )
    op.create_index("ix_trusted_documents_partner_id", "trusted_documents", ["partner_id"])
    # Plain ADD COLUMNs: SQLite keeps partners (and its grants_version triggers) as it is.
    op.add_column(
        "partners",
        sa.Column(
            "documents_version",
            sa.Integer(),
            server_default="0",
            nullable=False,
            comment="Bumped by a trigger on every change to the partner's trusted documents",
        ),
    )
    op.add_column(
        "partner_keys",
        sa.Column(
            "mode",
            sa.Enum("trusted", "open", name="key_mode", native_enum=False, length=16),
            server_default="trusted",
            nullable=False,
            comment="trusted: registered documents only; open: any document",
        ),
    )
    op.execute("UPDATE partner_keys SET mode = 'open'")  # they could run any document until now
    op.add_column(
        "access_records",
        sa.Column(
            "document_id",
            sa.String(length=71),
            nullable=True,
            comment="The registered document run (sha256:<hex>), when the request named one",
        ),
    )
    op.create_index("ix_access_records_document", "access_records", ["partner_id", "document_id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRESQL_FUNCTION)
        op.execute(
            "CREATE TRIGGER documents_version AFTER INSERT OR UPDATE OR DELETE ON trusted_documents "
            "FOR EACH ROW EXECUTE FUNCTION bump_documents_version()"
        )
    else:
        for name, (event, partners) in SQLITE_TRIGGERS.items():
            op.execute(
                f"CREATE TRIGGER {name} AFTER {event} ON trusted_documents BEGIN {BUMP.format(partners=partners)}; END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER documents_version ON trusted_documents")
        op.execute("DROP FUNCTION bump_documents_version()")
    else:
        for name in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER {name}")
    op.drop_index("ix_access_records_document", table_name="access_records")
    op.drop_column("access_records", "document_id")
    op.drop_column("partner_keys", "mode")
    op.drop_column("partners", "documents_version")
    op.drop_index("ix_trusted_documents_partner_id", table_name="trusted_documents")
    op.drop_table("trusted_documents")
