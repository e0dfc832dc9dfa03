"""The keys the server signs access tokens with, kept in the database: every worker signs and
verifies with the same keys, and they survive restarts.

The newest live key signs; every live key verifies and is published in the JWKS under its `kid`,
so a rotation (`partner-api oauth rotate-signing-key`) leaves tokens already issued valid, and
retiring the old key afterwards refuses them on their next request (api/identity/token_authentication.py
reads whether their key is live with their client). A worker signs with the keys as they are at each
token request, and re-reads them for verifying at most every `REFRESH_SECONDS`, and at once on an
unknown `kid`. The private parts are sealed with the server's secret (api/identity/key_seal.py): only
a key the current secret sealed signs, and the first token request that finds none (a fresh
database, a rotated secret) makes one; a key that opens under no secret is left unused.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from datetime import datetime

from joserfc.jwk import ECKey, KeySet
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from api.data.models import OAuthSigningKey
from api.identity.key_seal import KeySeal

__all__ = ["SigningKeys", "add_signing_key"]

logger = logging.getLogger(__name__)

REFRESH_SECONDS = 30.0
CURVE = "P-384"  # ES384


def _new_signing_key(seal: KeySeal, now: datetime) -> OAuthSigningKey:
    key = ECKey.generate_key(CURVE)
    kid = secrets.token_hex(8)
    return OAuthSigningKey(kid=kid, private_jwk=seal.seal(kid, json.dumps(key.as_dict(private=True))), created_at=now)


def add_signing_key(session: Session, seal: KeySeal, now: datetime) -> str:
    """A new signing key, which signs from now on (operators' rotation); its kid."""
    key = _new_signing_key(seal, now)
    session.add(key)
    session.flush()
    return key.kid


class SigningKeys:
    """The live signing keys, as one worker sees them."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], seal: KeySeal) -> None:
        self._sessions, self._seal = sessions, seal
        self._unopened: set[str] = set()  # the kids already logged as not opening
        # The keys that open, newest first, each with the latest `iat` it may have signed (None: any).
        self._keys: list[tuple[str, ECKey, float | None]] = []
        self._signing: ECKey | None = None  # the newest sealed with the current secret
        self._read_at = float("-inf")

    async def _refresh(self, now: datetime, create: bool = False) -> None:
        async with self._sessions() as session:
            statement = select(OAuthSigningKey).where(OAuthSigningKey.retired_at.is_(None))
            rows = list((await session.execute(statement)).scalars())
            keys, signing = self._opened(rows)
            if signing is None and create:
                # None sealed with the current secret (a fresh database, or the secret rotated: a key
                # sealed with the previous one would sign on under it). Two workers may both create
                # one: both are live, and either signs.
                row = _new_signing_key(self._seal, now)
                session.add(row)
                await session.commit()
                keys, signing = self._opened([*rows, row])
            self._keys, self._signing, self._read_at = keys, signing, time.monotonic()

    def _opened(self, rows: list[OAuthSigningKey]) -> tuple[list[tuple[str, ECKey, float | None]], ECKey | None]:
        """The keys that open with this server's secrets, newest first, each with the latest `iat` it
        may have signed; and the newest the current secret sealed, which signs.

        A key sealed with a previous secret signed nothing since the first key of the current one was
        made: a token it signed later was made by whoever holds that secret and a copy of the database
        (the leak a rotation answers). Tokens it signed before live out their minutes."""
        opened_rows = []
        for row in sorted(rows, key=lambda k: (k.created_at, k.kid), reverse=True):
            opened = self._seal.open(row.kid, row.private_jwk)
            if opened is not None:
                key = ECKey.import_key(json.loads(opened[0]), parameters={"kid": row.kid})
                opened_rows.append((row, key, opened[1]))
            elif row.kid not in self._unopened:
                self._unopened.add(row.kid)
                logger.warning("signing key %s does not open with this server's secret: left unused", row.kid)
        current = [(row, key) for row, key, is_current in opened_rows if is_current]
        rotated_at = min((row.created_at.timestamp() for row, _ in current), default=None)
        keys = [(row.kid, key, None if is_current else rotated_at) for row, key, is_current in opened_rows]
        return keys, current[0][1] if current else None

    async def _fresh(self, now: datetime, create: bool = False) -> list[tuple[str, ECKey, float | None]]:
        if time.monotonic() - self._read_at > REFRESH_SECONDS or (create and self._signing is None):
            await self._refresh(now, create)
        return self._keys

    async def signer(self, now: datetime) -> ECKey:
        """The key that signs tokens issued now: read again for each (a token request is rare), so that
        no token is signed by a key retired or replaced since this worker last read them."""
        await self._refresh(now, create=True)
        assert self._signing is not None  # made above when none was
        return self._signing

    async def verifier(self, kid: object, now: datetime) -> tuple[ECKey, float | None] | None:
        """The live key named `kid`, with the latest `iat` it may have signed (None: any); or None."""
        for _ in range(2):  # a kid this worker does not know yet: another worker may have rotated
            found = next(((key, until) for known, key, until in await self._fresh(now) if known == kid), None)
            if found is not None or not isinstance(kid, str):
                return found
            self._read_at = float("-inf")
        return None

    async def jwks(self, now: datetime) -> dict[str, object]:
        """The public keys, for `/oauth/jwks`."""
        keys = await self._fresh(now, create=True)
        public = KeySet([key for _, key, _ in keys]).as_dict(private=False)
        return {"keys": [{**k, "use": "sig", "alg": "ES384"} for k in public["keys"]]}
