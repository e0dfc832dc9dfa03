"""Per-request state handed to resolvers as `info.context`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Result, Select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request

from api.identity.authentication import Principal
from api.protection.budgets import Budgets
from api.services.cursors import CursorCodec
from api.errors import ApiError
from api.protection.extraction import ExtractionGuard
from api.identity.grant_cache import GrantCache
from api.settings import Settings
from api.ledger.access import APPOINTMENT, PATIENT, Disclosures, groups_for, through_history
from api.services.horizon import Horizons, RecordFields
from api.data.models import Appointment, Base, Patient
from api.scopes import LedgerGroup
from authz.actors import PartnerActor
from authz.engine import Authorizer


logger = logging.getLogger(__name__)


@dataclass
class RequestContext:
    request: Request
    principal: Principal
    request_time: datetime
    authorizer: Authorizer
    session: AsyncSession
    cursors: CursorCodec
    request_id: str
    settings: Settings
    budgets: Budgets
    extraction: ExtractionGuard
    grants: GrantCache
    write_turn: Callable[[AsyncSession], AbstractAsyncContextManager[None]]  # api.data.database.write_turns
    loaders: Any = None  # api.schema.loaders.Loaders, set by the app
    cost: dict[str, Any] | None = None  # the `cost` response extension
    refund: int = 0  # budget points taken but not spent, given back with the ledger write
    retry_after: int | None = None
    # For the ledger: the operation, every (type, field) it selects, and the records built for it.
    operation_name: str | None = None
    selected: set[tuple[str, str]] = field(default_factory=set)
    disclosures: Disclosures = field(default_factory=Disclosures)
    _groups: dict[tuple[str, frozenset[str]], int] = field(default_factory=dict)
    # Resolvers run concurrently; one AsyncSession must not.
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _fields: dict[tuple[int, bool], frozenset[str]] = field(default_factory=dict)
    _horizons: Horizons | None = None

    @property
    def actor(self) -> PartnerActor:
        return PartnerActor(self.principal.partner_id, self.principal.partner_name, self.request_time)

    def authorized(self, model: type[Base], action: str = "read") -> Select[Any]:
        """`select(model)` narrowed by the policy to the rows this partner may `action`."""
        return self.authorizer.filter(self.principal.partner_id, action, model)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """The request's session for a write that commits on its own (budget, disclosures, booking).

        A request never holds two connections at once: with a pool shared by concurrent
        requests, that could leave every request waiting for a second one.
        """
        async with self._lock:
            try:
                # The write joins the request's reads, which changed nothing (on SQLite they hold no
                # transaction at all): committing them first would cost a round trip.
                async with self.write_turn(self.session):
                    yield self.session
            except ApiError:
                raise  # a refusal, after its own commit: rolling back would expire the loaded rows
            except BaseException:  # also a cancellation (see `execute`), which may cut the commit itself
                await self.session.rollback()
                raise

    async def execute(self, statement: Select[Any]) -> Result[Any]:
        async with self._lock:
            try:
                return await self.session.execute(statement, {"request_time": self.request_time})
            except asyncio.CancelledError:
                # graphql-core cancels the siblings of a failed non-null field: a statement cut in
                # half leaves the session's transaction unusable for the rest of the request.
                try:
                    await self.session.rollback()
                except Exception:  # the cancellation, not the rollback's failure, must go on
                    logger.warning("rollback after a cancelled statement failed", exc_info=True)
                raise

    async def horizons(self) -> Horizons:
        """Where each of the partner's grants draws its reading horizon at this request's time."""
        if self._horizons is None:
            grants = await self.grants.of_partner(self.execute, self.principal.partner_id, self.principal.grants_version)
            self._horizons = Horizons.of((g for at_practice in grants.values() for g in at_practice), self.request_time)
        return self._horizons

    async def readable_fields(self, practice_ids: Iterable[int], in_horizon: bool = False) -> dict[int, frozenset[str]]:
        """"Type.field" names readable at each practice of a record inside the reading horizon there
        (`in_horizon`) or outside it (the default: deny unless shown inside), decided by the policy
        on the partner's grants there; computed once per practice, side and request."""
        wanted = set(practice_ids)
        missing = {p for p in wanted if (p, in_horizon) not in self._fields}
        if missing:
            grants = await self.grants.at_practices(self.execute, self.principal.partner_id, self.principal.grants_version, missing)
            for practice_id, at_practice in grants.items():
                self._fields[(practice_id, in_horizon)] = frozenset().union(
                    *(self.authorizer.readable_fields(self.actor, g, in_horizon=in_horizon) for g in at_practice)
                )
        return {p: self._fields[(p, in_horizon)] for p in wanted}

    def _field_groups(self, type_name: str, record: LedgerGroup, readable: frozenset[str]) -> int:
        """The groups a record of `type_name` discloses: computed once per grant state and request,
        as a plain int (IntFlag arithmetic per row is measurably slow)."""
        key = (type_name, readable)
        if key not in self._groups:
            self._groups[key] = record.bit | groups_for(type_name, self.selected, readable, self.authorizer.field_scopes)
        return self._groups[key]

    def disclose_appointment(self, row: Appointment, readable: frozenset[str], in_horizon: bool) -> None:
        groups = through_history(self._field_groups("Appointment", APPOINTMENT, readable), in_horizon)
        self.disclosures.add(self.disclosures.appointments, row.id, row.practice_id, groups)

    def disclose_patient(self, row: Patient, readable: frozenset[str], in_horizon: bool) -> None:
        groups = through_history(self._field_groups("Patient", PATIENT, readable), in_horizon)
        self.disclosures.add(self.disclosures.patients, row.id, row.practice_id, groups)

    async def readable_at(self, practice_id: int, in_horizon: bool = False) -> frozenset[str]:
        return (await self.readable_fields([practice_id], in_horizon))[practice_id]

    async def record_fields(self, practice_ids: Iterable[int]) -> dict[int, RecordFields]:
        """For appointments and patients: what is readable at each practice inside and outside the
        reading horizon there, and its bounds at this request's time."""
        wanted = set(practice_ids)
        horizons = await self.horizons()
        inside, outside = await self.readable_fields(wanted, True), await self.readable_fields(wanted, False)
        return {p: RecordFields(inside[p], outside[p], horizons.bounds.get(p)) for p in wanted}

    async def record_fields_at(self, practice_id: int) -> RecordFields:
        return (await self.record_fields([practice_id]))[practice_id]
