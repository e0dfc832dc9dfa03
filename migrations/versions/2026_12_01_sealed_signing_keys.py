"""The signing keys' private parts are sealed with the servers' secret (api/identity/key_seal.py).

Keys stored in clear before cannot be sealed here (a migration does not hold the secret): they are
retired and their private part erased. The tokens they signed (minutes at most) are refused, and
the workers make a sealed key at the next token request; clients ask for a new token as on any 401.
Workers of the release before read every live key as JSON: stop them before this release's workers
sign (a sealed key fails their token requests); going down retires the sealed keys for the same reason.

Revision ID: 5d1e8a7c9b20
Revises: 3f9c2d7e1b58
Create Date: 2026-12-01 00:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5d1e8a7c9b20"
down_revision: str | None = "3f9c2d7e1b58"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEALED_PREFIX = "aesgcm:"  # as api/identity/key_seal.py (revisions do not import application code)
COMMENT = {
    "before": "The private JWK, JSON",
    "after": "The private JWK, sealed with the servers' secret (api/identity/key_seal.py)",
}


def upgrade() -> None:
    op.execute(
        sa.text(
            "UPDATE oauth_signing_keys SET private_jwk = '', retired_at = COALESCE(retired_at, CURRENT_TIMESTAMP) "
            "WHERE private_jwk NOT LIKE :sealed"
        ).bindparams(sealed=SEALED_PREFIX + "%")
    )
    _comment(COMMENT["after"], COMMENT["before"])


def downgrade() -> None:
    # The release before reads every live key as JSON: sealed ones would fail each token request there.
    # Retired, they leave it to make a key of its own (their tokens, minutes old at most, are refused).
    op.execute(
        sa.text(
            "UPDATE oauth_signing_keys SET retired_at = CURRENT_TIMESTAMP "
            "WHERE retired_at IS NULL AND private_jwk LIKE :sealed"
        ).bindparams(sealed=SEALED_PREFIX + "%")
    )
    _comment(COMMENT["before"], COMMENT["after"])


def _comment(comment: str, existing: str) -> None:
    with op.batch_alter_table("oauth_signing_keys") as batch:
        batch.alter_column(
            "private_jwk", existing_type=sa.Text(), existing_nullable=False, comment=comment, existing_comment=existing
        )
