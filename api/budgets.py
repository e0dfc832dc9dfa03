"""Per-partner cost budgets: a token bucket in the database, so every worker shares it.

Each change is one atomic UPDATE: refill for the time elapsed (capped), then take or give back
points. Works the same on SQLite and PostgreSQL, and survives restarts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy import case, insert, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from api.models import Partner, PartnerBudget
from api.settings import Settings


@dataclass(frozen=True)
class Throttle:
    maximum_available: int
    currently_available: float
    restore_rate: float

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

    async def limits(self, session: AsyncSession, partner_id: int) -> tuple[int, float]:
        capacity, rate = (
            await session.execute(select(Partner.budget_capacity, Partner.budget_refill_per_second).where(Partner.id == partner_id))
        ).one()
        return capacity or self.settings.budget_capacity, rate or self.settings.budget_refill_per_second

    def _refilled(self, capacity: int, rate: float, now: float):  # type: ignore[no-untyped-def]
        refilled = PartnerBudget.points + (literal(now) - PartnerBudget.refilled_at) * rate
        return case((refilled > capacity, float(capacity)), else_=refilled)

    async def take(self, session: AsyncSession, partner_id: int, cost: int, now: float) -> Charge:
        """Take `cost` points if the bucket holds them; commits."""
        capacity, rate = await self.limits(session, partner_id)
        await self._ensure(session, partner_id, capacity, now)
        refilled = self._refilled(capacity, rate, now)
        taken = (
            await session.execute(
                update(PartnerBudget)
                .where(PartnerBudget.partner_id == partner_id, refilled >= cost)
                .values(points=refilled - cost, refilled_at=now)
                .returning(PartnerBudget.points)
            )
        ).scalar_one_or_none()
        if taken is not None:
            await session.commit()
            return Charge(True, Throttle(capacity, taken, rate), 0)
        available = (await session.execute(select(refilled).where(PartnerBudget.partner_id == partner_id))).scalar_one()
        await session.commit()
        return Charge(False, Throttle(capacity, available, rate), max(1, math.ceil((cost - available) / rate)))

    async def refund(self, session: AsyncSession, partner_id: int, points: int, now: float) -> Throttle:
        """Give back what was taken but not spent; commits."""
        capacity, rate = await self.limits(session, partner_id)
        refilled = self._refilled(capacity, rate, now) + points
        left = (
            await session.execute(
                update(PartnerBudget)
                .where(PartnerBudget.partner_id == partner_id)
                .values(points=case((refilled > capacity, float(capacity)), else_=refilled), refilled_at=now)
                .returning(PartnerBudget.points)
            )
        ).scalar_one()
        await session.commit()
        return Throttle(capacity, left, rate)

    async def status(self, session: AsyncSession, partner_id: int, now: float) -> Throttle:
        capacity, rate = await self.limits(session, partner_id)
        available = (
            await session.execute(select(self._refilled(capacity, rate, now)).where(PartnerBudget.partner_id == partner_id))
        ).scalar_one_or_none()
        return Throttle(capacity, capacity if available is None else available, rate)

    async def _ensure(self, session: AsyncSession, partner_id: int, capacity: int, now: float) -> None:
        exists = (await session.execute(select(PartnerBudget.partner_id).where(PartnerBudget.partner_id == partner_id))).first()
        if exists:
            return
        try:
            async with session.begin_nested():
                await session.execute(insert(PartnerBudget).values(partner_id=partner_id, points=float(capacity), refilled_at=now))
        except IntegrityError:  # another worker created it first
            pass
