"""The replay cache of signed JWTs (client assertions, DPoP proofs), shared by every worker.

A `jti` is taken by one insert that fails on conflict with the primary key, so that two workers
receiving the same JWT at once cannot both accept it (no read-then-write race). Rows are kept only
while their JWT could still be accepted, then purged.
"""

from __future__ import annotations

import hashlib
from contextlib import nullcontext
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from api.data.database import WriterLock
from api.data.models import UsedJti

__all__ = ["first_use"]


def _key(kind: str, issuer: str, jti: str) -> str:
    # Hashed: a fixed-width primary key whatever the client sends, and no client data stored as is;
    # a lone surrogate (valid JSON, not UTF-8) hashed as it came, not a failure answered 503.
    return hashlib.sha256(f"{kind}\x00{issuer}\x00{jti}".encode("utf-8", "surrogatepass")).hexdigest()


async def first_use(
    session: AsyncSession,
    kind: str,
    issuer: str,
    jti: str,
    expires_at: datetime,
    now: datetime,
    writer_lock: WriterLock | None = None,
) -> bool:
    """Records the `jti` of `issuer` (a client id, a key thumbprint) for `kind`; False if it was
    already recorded and unexpired: a replay. Commits, holding `writer_lock` (SQLite's writers of
    this process queue there rather than poll: a DPoP proof is a write on every request)."""
    values = {"key": _key(kind, issuer, jti), "expires_at": expires_at}
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = insert(UsedJti).values(values).on_conflict_do_nothing(index_elements=["key"])
    async with writer_lock(session) if writer_lock else nullcontext():
        await session.execute(delete(UsedJti).where(UsedJti.expires_at <= now))
        inserted = cast(CursorResult[Any], await session.execute(statement)).rowcount
        await session.commit()
    return inserted == 1
