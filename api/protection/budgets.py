"""Per-partner cost budgets: a token bucket in the database, so every worker shares it.

Each change is one atomic UPDATE: refill for the time elapsed (capped), then take or give back
points. Works the same on SQLite and PostgreSQL, and survives restarts. Concurrent requests reach
the row in any order: a clock reading older than the bucket's refills nothing and leaves its time
alone, so a late writer can neither drive the bucket negative nor refill the same time twice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Executable, Float, Result, Table, bindparam, case, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from api.data.models import PartnerBudget
from api.data.sqlite_driver import LAST_OF_TRANSACTION
from api.identity.authentication import Principal
from api.settings import Settings

# Built once, executed with bound values: the request path builds no SQL expression for its budget.
# On the table, not the entity: an ORM-enabled UPDATE first looks for the rows among loaded objects.
_BUDGETS = PartnerBudget.__table__
assert isinstance(_BUDGETS, Table)  # declarative types it as any FromClause
_BUDGET = _BUDGETS.c
_NOW, _RATE, _POINTS = bindparam("now", type_=Float), bindparam("rate", type_=Float), bindparam("points", type_=Float)
_CAPACITY = bindparam("capacity", type_=Float)
_OF_PARTNER = _BUDGET.partner_id == bindparam("partner")
_ELAPSED = case((_BUDGET.refilled_at < _NOW, _NOW - _BUDGET.refilled_at), else_=0.0)
_REFILLED = case((_BUDGET.points + _ELAPSED * _RATE > _CAPACITY, _CAPACITY), else_=_BUDGET.points + _ELAPSED * _RATE)
_LATEST = case((_BUDGET.refilled_at < _NOW, _NOW), else_=_BUDGET.refilled_at)
_TAKE = (
    update(_BUDGETS)
    .where(_OF_PARTNER, _REFILLED >= _POINTS)
    .values(points=_REFILLED - _POINTS, refilled_at=_LATEST)
    .returning(_BUDGET.points)
)
_REFUND = (
    update(_BUDGETS)
    .where(_OF_PARTNER)
    .values(points=case((_REFILLED + _POINTS > _CAPACITY, _CAPACITY), else_=_REFILLED + _POINTS), refilled_at=_LATEST)
)
_AVAILABLE = select(_REFILLED).where(_OF_PARTNER)


@dataclass(frozen=True)
class Throttle:
    maximum_available: int
    currently_available: float
    restore_rate: float

    def refunded(self, points: int) -> Throttle:
        """The bucket once `points` are given back (the refund itself is written with the ledger)."""
        return replace(self, currently_available=min(self.maximum_available, self.currently_available + points))

    def as_extension(self) -> dict[str, float]:
        return {
            "maximumAvailable": self.maximum_available,
            "currentlyAvailable": math.floor(self.currently_available),
            "restoreRate": self.restore_rate,
        }


@dataclass(frozen=True)
class Charge:
    granted: bool
    throttle: Throttle
    retry_after: int  # seconds until the bucket holds enough, when not granted


class Budgets:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def limits(self, principal: Principal) -> tuple[int, float]:
        return (
            principal.budget_capacity or self.settings.budget_capacity,
            principal.budget_refill_per_second or self.settings.budget_refill_per_second,
        )

    def _bound(self, principal: Principal, now: float, points: int = 0) -> tuple[int, float, dict[str, float]]:
        """The partner's capacity and rate, and the values the statements above are executed with."""
        capacity, rate = self.limits(principal)
        return (
            capacity,
            rate,
            {"partner": principal.partner_id, "capacity": float(capacity), "rate": rate, "now": now, "points": points},
        )

    async def take(self, session: AsyncSession, principal: Principal, cost: int, now: float) -> Charge:
        """Take `cost` points if the bucket holds them; commits."""
        capacity, rate, values = self._bound(principal, now, cost)
        # Each take ends a transaction: either it took the points, or it changed nothing.
        taken = (await _execute(session, _TAKE, values, LAST_OF_TRANSACTION)).scalar_one_or_none()
        if taken is None:
            # Either the bucket is short, or it does not exist yet: a partner's first request creates
            # it, and a concurrent one may have just done so. Taken again once it surely exists.
            await self._create(session, principal.partner_id, capacity, now)
            taken = (await _execute(session, _TAKE, values, LAST_OF_TRANSACTION)).scalar_one_or_none()
        if taken is not None:
            await session.commit()
            return Charge(True, Throttle(capacity, taken, rate), 0)
        available = (await _execute(session, _AVAILABLE, values)).scalar_one()
        await session.commit()
        return Charge(False, Throttle(capacity, available, rate), max(1, math.ceil((cost - available) / rate)))

    async def refund(
        self, session: AsyncSession, principal: Principal, points: int, now: float, last: bool = False
    ) -> None:
        """Give back what was taken but not spent, in the caller's transaction (the ledger's); `last`:
        the transaction's last statement."""
        await _execute(session, _REFUND, self._bound(principal, now, points)[2], LAST_OF_TRANSACTION if last else None)

    async def status(self, session: AsyncSession, principal: Principal, now: float) -> Throttle:
        capacity, rate, values = self._bound(principal, now)
        available = (await _execute(session, _AVAILABLE, values)).scalar_one_or_none()
        return Throttle(capacity, capacity if available is None else available, rate)

    async def _create(self, session: AsyncSession, partner_id: int, capacity: int, now: float) -> None:
        """A full bucket for a partner's first request, unless it exists (or another worker creates it first)."""
        if (
            await session.execute(select(PartnerBudget.partner_id).where(PartnerBudget.partner_id == partner_id))
        ).first():
            return
        try:
            async with session.begin_nested():
                await session.execute(
                    insert(PartnerBudget).values(partner_id=partner_id, points=float(capacity), refilled_at=now)
                )
        except IntegrityError:  # another worker created it first
            pass


async def _execute(
    session: AsyncSession, statement: Executable, values: dict[str, float], options: Mapping[str, Any] | None = None
) -> Result[Any]:
    """The statement on the session's connection (its transaction): a Core statement needs none of
    the session's ORM execution, a tenth of a millisecond per statement (nor its autoflush: no
    budget row is ever loaded as an object)."""
    return await (await session.connection()).execute(statement, values, execution_options=options)
