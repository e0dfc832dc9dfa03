"""A practice's activity baseline: the distinct patients of its typical week, which sizes the
distinct-patient budget of every partner there.

Only appointments the practice made and timed itself (`source_partner_id` and
`time_set_by_partner_id` NULL) and did not cancel count, so no partner can raise its own limit by
booking, with or without cancelling, nor by moving the practice's appointments into the weeks measured. The value is
the median of the weekly counts over a few past and coming weeks, stored in the database (one row
per practice, shared by every worker), recomputed at most once a day, and it may grow by at most
`extraction_baseline_max_growth` from one computation to the next.
"""

from __future__ import annotations

import math
import statistics
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from api.data.models import Appointment, AppointmentStatus, PracticeActivity
from api.settings import Settings

__all__ = ["RECOMPUTE_AFTER", "weekly_patients"]

RECOMPUTE_AFTER = timedelta(days=1)
WEEK = timedelta(days=7)


async def weekly_patients(session: AsyncSession, settings: Settings, practice_id: int, now: datetime) -> int:
    """The practice's baseline as stored, recomputed first when it is a day old or missing."""
    stored = (
        await session.execute(
            select(PracticeActivity.weekly_patients, PracticeActivity.computed_at).where(
                PracticeActivity.practice_id == practice_id
            )
        )
    ).first()
    if stored is not None and now - stored.computed_at < RECOMPUTE_AFTER:
        return int(stored.weekly_patients)
    measured = await _measure(session, settings, practice_id, now)
    value = measured
    if stored is not None:
        # From at least the floor's worth, so that a practice that starts small can still grow.
        ceiling = math.ceil(
            max(stored.weekly_patients, settings.extraction_floor) * (1 + settings.extraction_baseline_max_growth)
        )
        value = min(measured, ceiling)
    dialect_insert = sqlite_insert if session.get_bind().dialect.name == "sqlite" else postgresql_insert
    row = {"practice_id": practice_id, "weekly_patients": value, "measured_patients": measured, "computed_at": now}
    statement = dialect_insert(PracticeActivity).values(row)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[PracticeActivity.practice_id],
            set_={k: statement.excluded[k] for k in ("weekly_patients", "measured_patients", "computed_at")},
            # Another worker may have just computed it: the first one of the day stands.
            where=PracticeActivity.computed_at <= now - RECOMPUTE_AFTER,
        )
    )
    return value


async def _measure(session: AsyncSession, settings: Settings, practice_id: int, now: datetime) -> int:
    start = now - settings.extraction_baseline_weeks_back * WEEK
    weeks = settings.extraction_baseline_weeks_back + settings.extraction_baseline_weeks_ahead
    counts = []
    for week in range(max(weeks, 1)):
        since = start + week * WEEK
        counts.append(
            (
                await session.execute(
                    select(func.count(func.distinct(Appointment.patient_id))).where(
                        Appointment.practice_id == practice_id,
                        Appointment.starts_at >= since,
                        Appointment.starts_at < since + WEEK,
                        Appointment.source_partner_id.is_(None),
                        Appointment.time_set_by_partner_id.is_(None),
                        Appointment.status != AppointmentStatus.CANCELLED,
                    )
                )
            ).scalar_one()
        )
    return math.ceil(statistics.median(counts))
