"""One request's unit of work: its database session, the policy's row filters, and transactions.

Every read goes through `authorized` and `execute`, so no query runs without the partner's row
filter and the request time bound; every write goes through `transaction`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Result, Select
from sqlalchemy.ext.asyncio import AsyncSession

from api.data.database import WriterLock
from api.data.models import Base
from api.errors import ApiError
from api.identity.authentication import Principal
from api.identity.request_identity import RequestIdentity
from authz.engine import Authorizer

__all__ = ["UnitOfWork"]

logger = logging.getLogger(__name__)


class UnitOfWork:
    """The session of one request, used by one coroutine at a time.

    Resolvers run concurrently and one AsyncSession must not, hence the lock. A request never
    holds two connections at once: with a pool shared by concurrent requests, that could leave
    every request waiting for a second one.
    """

    def __init__(
        self, session: AsyncSession, authorizer: Authorizer, identity: RequestIdentity, writer_lock: WriterLock
    ) -> None:
        self.session = session
        self.authorizer = authorizer
        self.identity = identity
        self._writer_lock = writer_lock
        self._lock = asyncio.Lock()

    @property
    def principal(self) -> Principal:
        return self.identity.principal

    @property
    def request_time(self) -> datetime:
        return self.identity.request_time

    def authorized(self, model: type[Base], action: str = "read") -> Select[Any]:
        """`select(model)` narrowed by the policy to the rows this partner may `action`."""
        return self.authorizer.filter(self.identity.principal.partner_id, action, model)

    async def execute(self, statement: Select[*tuple[Any, ...]]) -> Result[*tuple[Any, ...]]:
        """Runs a read, with the request time bound for the policy's conditions."""
        async with self._lock:
            try:
                result: Result[*tuple[Any, ...]] = await self.session.execute(
                    statement, {"request_time": self.identity.request_time}
                )
                return result
            except asyncio.CancelledError:
                # graphql-core cancels the siblings of a failed non-null field: a statement cut in
                # half leaves the session's transaction unusable for the rest of the request.
                try:
                    await self.session.rollback()
                except Exception:  # the cancellation, not the rollback's failure, must go on
                    logger.warning("rollback after a cancelled statement failed", exc_info=True)
                raise

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """The session for a write that commits on its own (budget, distinct patients, booking)."""
        async with self._lock:
            try:
                # The write joins the request's reads, which changed nothing (on SQLite they hold no
                # transaction at all): committing them first would cost a round trip.
                async with self._writer_lock(self.session):
                    yield self.session
            except ApiError:
                raise  # a refusal, after its own commit: rolling back would expire the loaded rows
            except BaseException:  # also a cancellation (see `execute`), which may cut the commit itself
                await self.session.rollback()
                raise
