"""Each worker's authenticated keys, kept between requests: a request with a key this worker has
already authenticated reads no key, partner or policy row and compares no hash.

Every change that can alter a key's principal is seen on the next request, in every worker, as
without the cache: triggers (migrations/versions/2026_11_30_principal_notifications.py) fire on
the key (anything but its last use), its partner (status, budget, tokens_required, and the grants
and documents versions their own triggers bump), its grants, its documents and the policy releases.
- PostgreSQL: they `pg_notify('partner_api_principals', ...)`; each worker listens on one connection
  of its own (`Notifications`), and each notification starts a new generation. While the worker is
  not listening (starting, connection lost, reconnecting) the cache is bypassed: every request
  authenticates as without it. A notification reaches a worker a moment after the change commits
  (on one host, well under a millisecond): a request in that moment is served as just before it.
- SQLite: they bump the one row of `principal_versions`; a hit reads it (one indexed SELECT).
Entries carry the generation or version read *before* their lookup, and hit only under the current
one: a lookup that a change overtakes stores an entry that never hits, never a stale principal.
On every hit, the key's expiry is checked against the request's time; a key whose recorded last use
is older than LAST_USED_PRECISION takes the full lookup, which records it.

Entries are keyed by the SHA-256 of the whole credential (never the secret itself), so a wrong
secret for a known prefix never hits. Only keys that authenticate are kept: quarantined keys, keys
of partners that must use tokens, and OAuth access tokens (api/identity/token_authentication.py,
whose DPoP proof and grants version are checked per request) take the full lookup every time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import asyncpg
from cachetools import LRUCache
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from api.data.models import PrincipalVersion
from api.identity.authentication import LAST_USED_PRECISION, AuthenticatedKey, Principal, authenticate_key
from api.settings import Settings

__all__ = ["CHANNEL", "Notifications", "PrincipalCache", "Uncached", "VersionRow", "principal_cache"]

logger = logging.getLogger("api.principals")

CHANNEL = "partner_api_principals"  # as the migration's triggers
MAX_ENTRIES = 10_000  # keys (an entry is one small principal)
PING_SECONDS = 5.0  # a silent connection is checked this often (a lost one is told at once)
PING_TIMEOUT_SECONDS = 2.0
RECONNECT_SECONDS = (0.1, 5.0)  # first and longest wait before connecting again
# Plain SQL on the session's connection: no ORM execution nor statement compilation for the one row.
_VERSION_SQL = f"SELECT value FROM {PrincipalVersion.__tablename__} WHERE id = 1"


class Freshness(Protocol):
    async def stamp(self, session: AsyncSession) -> int | None:
        """The current generation of the keys' principals; None: do not use the cache now."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Uncached:
    """PARTNER_API_PRINCIPAL_CACHE off: every request authenticates in full."""

    async def stamp(self, session: AsyncSession) -> int | None:
        return None

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


class VersionRow(Uncached):
    """SQLite: the one row the triggers bump, read on every request (in the request's transaction,
    so the full lookup that may follow reads the same snapshot or a later one)."""

    async def stamp(self, session: AsyncSession) -> int | None:
        connection = await session.connection()
        return int((await connection.exec_driver_sql(_VERSION_SQL)).scalar_one())


class Notifications:
    """PostgreSQL: one listening connection per worker, opened again whenever it is lost."""

    def __init__(self, database_url: str) -> None:
        self.dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
        self.generation = 0
        self.listening = False
        self._listening = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def stamp(self, session: AsyncSession) -> int | None:
        return self.generation if self.listening else None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._listen())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def wait_listening(self, timeout: float) -> None:
        """Until the connection listens (tests, the benchmark); TimeoutError past `timeout` seconds."""
        async with asyncio.timeout(timeout):
            await self._listening.wait()

    def _changed(self, *_: object) -> None:
        """A notification (any payload), or the connection opened or lost: every entry is stale."""
        self.generation += 1

    async def _listen(self) -> None:
        wait = RECONNECT_SECONDS[0]
        while True:
            try:
                await self._serve_connection()
                wait = RECONNECT_SECONDS[0]
            except Exception:  # refused, lost or silent: bypassed until it is back
                logger.warning("principal notifications unavailable: the key cache is bypassed", exc_info=True)
            await asyncio.sleep(wait)
            wait = min(wait * 2, RECONNECT_SECONDS[1])

    async def _serve_connection(self) -> None:
        lost = asyncio.Event()
        connection = await asyncpg.connect(
            self.dsn, timeout=PING_TIMEOUT_SECONDS * 5, server_settings={"application_name": "partner-api principals"}
        )
        try:
            connection.add_termination_listener(lambda _: lost.set())
            await connection.add_listener(CHANNEL, self._changed)
            self._changed()  # whatever changed before LISTEN: entries stored earlier never hit
            self.listening = True
            self._listening.set()
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), PING_SECONDS)
                if not lost.is_set():  # a connection cut without a word (a network partition) fails here
                    await asyncio.wait_for(connection.fetchval("SELECT 1"), PING_TIMEOUT_SECONDS)
        finally:
            self.listening = False
            self._listening.clear()
            self._changed()
            connection.terminate()


@dataclass(frozen=True)
class _Entry:
    key: AuthenticatedKey
    stamp: int


class PrincipalCache:
    """Key -> principal, one per worker (api/http/app.py); step 3 of the pipeline calls `authenticate`."""

    def __init__(self, freshness: Freshness, max_entries: int = MAX_ENTRIES) -> None:
        self.freshness = freshness
        self._entries: LRUCache[bytes, _Entry] = LRUCache(max_entries)
        self._stamp: int | None = None  # the generation the entries were stored under

    async def authenticate(self, session: AsyncSession, token: str | None, now: datetime) -> Principal | None:
        """As api.identity.authentication.authenticate, without its statement on a hit."""
        if not token:
            return None
        stamp = await self.freshness.stamp(session)
        if stamp is None:
            found = await authenticate_key(session, token, now)
            return found.principal if found else None
        if stamp != self._stamp:  # something changed: whatever was kept may be stale
            self._entries.clear()
            self._stamp = stamp
        digest = hashlib.sha256(token.encode()).digest()
        entry = self._entries.pop(digest, None)
        if entry is not None and entry.stamp == stamp and _still_valid(entry.key, now):
            self._entries[digest] = entry
            return entry.key.principal
        found = await authenticate_key(session, token, now)  # raises for a quarantined key, kept out
        if found is None:
            return None
        self._entries[digest] = _Entry(found, stamp)  # hits only while no change followed `stamp`
        return found.principal

    async def start(self) -> None:
        await self.freshness.start()

    async def stop(self) -> None:
        await self.freshness.stop()


def _still_valid(key: AuthenticatedKey, now: datetime) -> bool:
    unexpired = key.expires_at is None or key.expires_at > now
    return unexpired and now - key.last_used_at <= LAST_USED_PRECISION


def principal_cache(settings: Settings) -> PrincipalCache:
    """The worker's cache, as PARTNER_API_PRINCIPAL_CACHE and the database allow."""
    if not settings.principal_cache:
        return PrincipalCache(Uncached())
    if make_url(settings.database_url).get_backend_name() == "postgresql":
        return PrincipalCache(Notifications(settings.database_url))
    return PrincipalCache(VersionRow())
