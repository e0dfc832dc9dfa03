"""OAuth 2.0 client credentials: partners' clients and their public keys, the server's signing keys,
the replay cache of assertions and DPoP proofs, partners that require tokens, and the ledger's
token columns (issue 19).

Revision ID: 7222708647ea
Revises: 02fafd39984f
Create Date: 2026-11-30 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7222708647ea"
down_revision: str | None = "02fafd39984f"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As api.data.models: BIGINT keys on PostgreSQL, INTEGER on SQLite; timezone-aware times.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "oauth_clients",
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("client_id", sa.String(64), nullable=False, comment="Public: iss and sub of its assertions"),
        sa.Column("partner_id", BIG_ID, nullable=False),
        sa.Column("key_id", BIG_ID, nullable=False),
        sa.Column("jwks_url", sa.String(500), nullable=True, comment="Where its JWKS was read from, if a URL"),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.ForeignKeyConstraint(["partner_id"], ["partners.id"], ondelete="CASCADE",
                                name="fk_oauth_clients_partner_id_partners"),
        sa.ForeignKeyConstraint(["key_id"], ["partner_keys.id"], ondelete="CASCADE",
                                name="fk_oauth_clients_key_id_partner_keys"),
        sa.PrimaryKeyConstraint("id", name="pk_oauth_clients"),
        sa.UniqueConstraint("client_id", name="uq_oauth_clients_client_id"),
        sa.UniqueConstraint("key_id", name="uq_oauth_clients_key_id"),
    )
    op.create_index("ix_oauth_clients_partner_id", "oauth_clients", ["partner_id"])
    op.create_table(
        "oauth_client_keys",
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("client_id", BIG_ID, nullable=False),
        sa.Column("kid", sa.String(200), nullable=False),
        sa.Column("jwk", sa.Text(), nullable=False, comment="The public JWK, JSON"),
        sa.Column("added_at", UTC_TIME, nullable=False),
        sa.Column("retired_at", UTC_TIME, nullable=True, comment="Refused for assertions from then on"),
        sa.ForeignKeyConstraint(["client_id"], ["oauth_clients.id"], ondelete="CASCADE",
                                name="fk_oauth_client_keys_client_id_oauth_clients"),
        sa.PrimaryKeyConstraint("id", name="pk_oauth_client_keys"),
        sa.UniqueConstraint("client_id", "kid", name="uq_oauth_client_keys_client_id"),
    )
    op.create_table(
        "oauth_signing_keys",
        sa.Column("kid", sa.String(64), nullable=False),
        sa.Column("private_jwk", sa.Text(), nullable=False, comment="The private JWK, JSON"),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("retired_at", UTC_TIME, nullable=True),
        sa.PrimaryKeyConstraint("kid", name="pk_oauth_signing_keys"),
    )
    op.create_table(
        "oauth_used_jtis",
        sa.Column("key", sa.String(64), nullable=False, comment="SHA-256 of kind, issuer and jti"),
        sa.Column("expires_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_oauth_used_jtis"),
    )
    op.create_index("ix_oauth_used_jtis_expires_at", "oauth_used_jtis", ["expires_at"])
    # Plain ADD COLUMNs: SQLite keeps the partners table (and its grants_version triggers) as it is.
    op.add_column("partners", sa.Column(
        "tokens_required", sa.Boolean(), server_default=sa.text("false"), nullable=False,
        comment="Refuse its API keys: only OAuth access tokens (api/identity/token_authentication.py)",
    ))
    op.add_column("access_records", sa.Column(
        "client_id", sa.String(64), nullable=True, comment="OAuth client of the access token, if one"
    ))
    op.add_column("access_records", sa.Column(
        "token_jti", sa.String(64), nullable=True, comment="The access token's jti, if one"
    ))


def downgrade() -> None:
    # Not batches: SQLite drops a plain column in place since 3.35, and partners keeps its triggers.
    op.execute("ALTER TABLE access_records DROP COLUMN token_jti")
    op.execute("ALTER TABLE access_records DROP COLUMN client_id")
    op.execute("ALTER TABLE partners DROP COLUMN tokens_required")
    op.drop_index("ix_oauth_used_jtis_expires_at", table_name="oauth_used_jtis")
    op.drop_table("oauth_used_jtis")
    op.drop_table("oauth_signing_keys")
    op.drop_table("oauth_client_keys")
    op.drop_index("ix_oauth_clients_partner_id", table_name="oauth_clients")
    op.drop_table("oauth_clients")
