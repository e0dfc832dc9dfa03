"""Book-then-cancel churn: a partner cancelling many of its own fresh bookings at a practice.

Such bookings no longer move any limit (`api.protection.activity` counts only the practice's own
appointments), but the pattern is how the limit used to be inflated, and a legitimate partner
rarely needs it: operators hear of it, once a day per partner and practice.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.data.models import AlertKind, Appointment, AppointmentStatus
from api.ledger import alerts
from api.settings import Settings

__all__ = ["WINDOW", "after_cancel"]

WINDOW = timedelta(hours=24)


async def after_cancel(
    session: AsyncSession, settings: Settings, appointment: Appointment, partner_id: int, key_id: int, now: datetime
) -> bool:
    """After the partner cancelled `appointment` (in the same transaction): raise a churn alert when
    its quick cancellations of its own bookings there reach the threshold. True when one was raised."""
    quick = timedelta(minutes=settings.extraction_churn_minutes)
    if appointment.source_partner_id != partner_id or now - appointment.created_at > quick:
        return False
    recent = await session.execute(
        select(Appointment.created_at, Appointment.updated_at).where(
            Appointment.source_partner_id == partner_id,
            Appointment.practice_id == appointment.practice_id,
            Appointment.created_at >= now - WINDOW,
            Appointment.status == AppointmentStatus.CANCELLED,
        )
    )
    churned = sum(1 for created, updated in recent if updated - created <= quick)
    if churned < settings.extraction_churn_cancellations:
        return False
    raised = await alerts.record(session, alerts.NewAlert(
        AlertKind.CHURN, partner_id, appointment.practice_id, key_id, now,
        churned, settings.extraction_churn_cancellations, round(WINDOW.total_seconds() / 3600),
    ))
    return raised is not None
