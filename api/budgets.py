"""Per-partner cost budgets: a token bucket in the database, so every worker shares it.

Each change is one atomic UPDATE: refill for the time elapsed (capped), then take or give back
points. Works the same on SQLite and PostgreSQL, and survives restarts. Concurrent requests reach
the row in any order: a clock reading older than the bucket's refills nothing and leaves its time
alone, so a late writer can neither drive the bucket negative nor refill the same time twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from sqlalchemy import case, insert, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from api.auth import Principal
from api.models import PartnerBudget
from api.settings import Settings


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

    def _refilled(self, capacity: int, rate: float, now: float):  # type: ignore[no-untyped-def]
        elapsed = case((literal(now) > PartnerBudget.refilled_at, literal(now) - PartnerBudget.refilled_at), else_=0.0)
        refilled = PartnerBudget.points + elapsed * rate
        return case((refilled > capacity, float(capacity)), else_=refilled)

    @staticmethod
    def _latest(now: float):  # type: ignore[no-untyped-def]
        return case((literal(now) > PartnerBudget.refilled_at, literal(now)), else_=PartnerBudget.refilled_at)

    async def take(self, session: AsyncSession, principal: Principal, cost: int, now: float) -> Charge:
        """Take `cost` points if the bucket holds them; commits."""
        capacity, rate = self.limits(principal)
        refilled = self._refilled(capacity, rate, now)
        taking = (
            update(PartnerBudget)
            .where(PartnerBudget.partner_id == principal.partner_id, refilled >= cost)
            .values(points=refilled - cost, refilled_at=self._latest(now))
            .returning(PartnerBudget.points)
        )
        taken = (await session.execute(taking)).scalar_one_or_none()
        if taken is None and await self._created(session, principal.partner_id, capacity, now):
            taken = (await session.execute(taking)).scalar_one_or_none()
        if taken is not None:
            await session.commit()
            return Charge(True, Throttle(capacity, taken, rate), 0)
        available = (await session.execute(select(refilled).where(PartnerBudget.partner_id == principal.partner_id))).scalar_one()
        await session.commit()
        return Charge(False, Throttle(capacity, available, rate), max(1, math.ceil((cost - available) / rate)))

    async def refund(self, session: AsyncSession, principal: Principal, points: int, now: float) -> None:
        """Give back what was taken but not spent, in the caller's transaction (the ledger's)."""
        capacity, rate = self.limits(principal)
        refilled = self._refilled(capacity, rate, now) + points
        await session.execute(
            update(PartnerBudget)
            .where(PartnerBudget.partner_id == principal.partner_id)
            .values(points=case((refilled > capacity, float(capacity)), else_=refilled), refilled_at=self._latest(now))
        )

    async def status(self, session: AsyncSession, principal: Principal, now: float) -> Throttle:
        capacity, rate = self.limits(principal)
        available = (
            await session.execute(
                select(self._refilled(capacity, rate, now)).where(PartnerBudget.partner_id == principal.partner_id)
            )
        ).scalar_one_or_none()
        return Throttle(capacity, capacity if available is None else available, rate)

    async def _created(self, session: AsyncSession, partner_id: int, capacity: int, now: float) -> bool:
        """Create a full bucket for a partner's first request; False when it already existed."""
        if (await session.execute(select(PartnerBudget.partner_id).where(PartnerBudget.partner_id == partner_id))).first():
            return False
        try:
            async with session.begin_nested():
                await session.execute(insert(PartnerBudget).values(partner_id=partner_id, points=float(capacity), refilled_at=now))
        except IntegrityError:  # another worker created it first
            pass
        return True
