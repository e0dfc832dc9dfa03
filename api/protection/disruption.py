"""The change limit: a partner cancelling or rescheduling, at a practice, appointments it did not book.

Any partner with appointments:write may change any booked appointment at the practice (practice
software manages the practice's agenda), so one stolen key could cancel a week of other patients'
appointments, ten points a write, and no alert said so. Per partner and practice, the appointments
it changes that it had not booked are counted over 24 h against a limit sized from the practice's own
activity, as the distinct-patient budget is (`api.protection.activity`, which no partner can inflate):
operators are warned at the budget's fractions, and past the limit the change is refused
(CHANGE_LIMIT_EXCEEDED, nothing changed) and the key quarantined, unless the partner's refusals do
not quarantine. A partner's own bookings never count.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.data.models import AlertKind, Appointment, Grant, PartnerChange
from api.errors import ApiError, ErrorCode
from api.ledger import alerts
from api.protection.activity import weekly_patients
from api.protection.extraction import contain
from api.services.unit_of_work import UnitOfWork
from api.settings import Settings

__all__ = ["WINDOW", "admit_change", "change_refused"]

WINDOW = timedelta(hours=24)


def change_refused(quarantined: bool) -> ApiError:
    """What the client is told: neither the limit nor how far it got (the figures go to the alert)."""
    return ApiError(
        ErrorCode.CHANGE_LIMIT_EXCEEDED,
        "Too many appointments you did not book were changed at this practice today; the operator has been "
        "alerted." + (" This key is now quarantined." if quarantined else ""),
        quarantined=quarantined,
    )


async def limit(session: AsyncSession, settings: Settings, partner_id: int, practice_id: int, now: datetime) -> int:
    """The grant's explicit limit, an operator's decision (`grant limits --changes-per-day`); else sized
    from the practice's activity."""
    explicit = (
        await session.execute(
            select(Grant.max_changes_per_day).where(
                Grant.partner_id == partner_id, Grant.practice_id == practice_id, Grant.revoked_at.is_(None)
            )
        )
    ).scalar_one_or_none()
    if explicit is not None:
        return int(explicit)
    weekly = await weekly_patients(session, settings, practice_id, now)
    return max(settings.disruption_floor, math.ceil(settings.disruption_activity_factor * weekly))


async def admit_change(
    session: AsyncSession, uow: UnitOfWork, settings: Settings, appointment: Appointment, on_alert: Callable[[], None]
) -> None:
    """Before the partner cancels or moves `appointment`, in the write's session: count it when the
    partner did not book it, or raise CHANGE_LIMIT_EXCEEDED (its alert and quarantine kept whatever
    becomes of the write, `UnitOfWork.keep`)."""
    partner_id, key_id, now = uow.principal.partner_id, uow.principal.key_id, uow.request_time
    if appointment.source_partner_id == partner_id:
        return
    # Called after the write took the change counter (api/services/writes.py `next_change_seq`), whose
    # row lock orders every write until its commit: two workers' changes are counted one after the other.
    practice_id = appointment.practice_id
    pair = (PartnerChange.partner_id == partner_id, PartnerChange.practice_id == practice_id)
    await session.execute(delete(PartnerChange).where(*pair, PartnerChange.at < now - WINDOW))
    held = (await session.execute(select(func.count()).where(*pair))).scalar_one()
    most = await limit(session, settings, partner_id, practice_id, now)

    def alert(kind: AlertKind, **more: Any) -> alerts.NewAlert:
        hours = round(WINDOW.total_seconds() / 3600)
        return alerts.NewAlert(kind, partner_id, practice_id, key_id, now, held, most, hours, **more)

    if held + 1 > most:
        quarantines, _ = await contain(
            session, uow.keep, on_alert, partner_id, key_id, now,
            [alert(AlertKind.DISRUPTION, patients_refused=1)], alert(AlertKind.QUARANTINE),
        )  # fmt: skip
        refused = change_refused(quarantines)
        if quarantines:
            uow.halted = refused  # the rest of the document writes nothing more
        raise refused
    await session.execute(insert(PartnerChange).values(partner_id=partner_id, practice_id=practice_id, at=now))
    warned = [
        await alerts.record(session, alert(AlertKind.DISRUPTION, fraction=fraction))
        for fraction in settings.extraction_warning_fractions
        if held < fraction * most <= held + 1
    ]
    if any(warned):
        await uow.commit(on_alert)  # the write is held: the webhook is woken once it is committed
