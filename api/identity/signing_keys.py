"""The keys the server signs access tokens with, kept in the database: every worker signs and
verifies with the same keys, and they survive restarts.

The newest live key signs; every live key verifies and is published in the JWKS under its `kid`,
so a rotation (`partner-api oauth rotate-signing-key`) leaves tokens already issued valid, and
retiring the old key afterwards refuses them. Each worker re-reads the keys at most every
`REFRESH_SECONDS`, and at once on an unknown `kid`. The first token request of a fresh database
creates the first key.
"""

from __future__ import annotations

import json
import secrets
import time
from datetime import datetime

from joserfc.jwk import ECKey, KeySet
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from api.data.models import OAuthSigningKey

__all__ = ["SigningKeys", "new_signing_key"]

REFRESH_SECONDS = 30.0
CURVE = "P-384"  # ES384


def new_signing_key(now: datetime) -> OAuthSigningKey:
    key = ECKey.generate_key(CURVE)
    kid = secrets.token_hex(8)
    return OAuthSigningKey(kid=kid, private_jwk=json.dumps(key.as_dict(private=True)), created_at=now)


def _live(session_rows: list[OAuthSigningKey]) -> list[tuple[str, ECKey]]:
    ordered = sorted(session_rows, key=lambda k: (k.created_at, k.kid), reverse=True)  # newest first
    return [(k.kid, ECKey.import_key(json.loads(k.private_jwk), parameters={"kid": k.kid})) for k in ordered]


def add_signing_key(session: Session, now: datetime) -> str:
    """A new signing key, which signs from now on (operators' rotation); its kid."""
    key = new_signing_key(now)
    session.add(key)
    session.flush()
    return key.kid


class SigningKeys:
    """The live signing keys, as one worker sees them."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._keys: list[tuple[str, ECKey]] = []
        self._read_at = float("-inf")

    async def _refresh(self, now: datetime, create: bool = False) -> None:
        async with self._sessions() as session:
            statement = select(OAuthSigningKey).where(OAuthSigningKey.retired_at.is_(None))
            rows = list((await session.execute(statement)).scalars())
            if not rows and create:
                # Two workers may both create one: both are live, and either signs.
                rows = [new_signing_key(now)]
                session.add(rows[0])
                await session.commit()
            self._keys, self._read_at = _live(rows), time.monotonic()

    async def _fresh(self, now: datetime, create: bool = False) -> list[tuple[str, ECKey]]:
        if time.monotonic() - self._read_at > REFRESH_SECONDS or (create and not self._keys):
            await self._refresh(now, create)
        return self._keys

    async def signer(self, now: datetime) -> ECKey:
        """The key that signs tokens issued now."""
        return (await self._fresh(now, create=True))[0][1]

    async def verifier(self, kid: object, now: datetime) -> ECKey | None:
        """The live key named `kid`, or None."""
        for _ in range(2):  # a kid this worker does not know yet: another worker may have rotated
            found = next((key for known, key in await self._fresh(now) if known == kid), None)
            if found is not None or not isinstance(kid, str):
                return found
            self._read_at = float("-inf")
        return None

    async def jwks(self, now: datetime) -> dict[str, object]:
        """The public keys, for `/oauth/jwks`."""
        keys = await self._fresh(now, create=True)
        public = KeySet([key for _, key in keys]).as_dict(private=False)
        return {"keys": [{**k, "use": "sig", "alg": "ES384"} for k in public["keys"]]}
