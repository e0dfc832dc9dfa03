"""The distinct-patient budget: the defence against bulk extraction.

Per partner and practice, patients whose data was returned are remembered with the time of their
first disclosure in the window. Before new patients are returned, their count in the rolling window is
checked against a threshold: the grant's own, or by default a multiple of the patients the
practice really sees in a week (with a floor), so that a day of sync never hits it while
paging through the whole patient file does, early. A refusal records an alert.
"""

from __future__ import annotations

import math
import time
from collections.abc import Collection
from datetime import datetime, timedelta

from sqlalchemy import Exists, delete, exists, func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from api.errors import ApiError, ErrorCode
from api.data.models import Appointment, ExtractionAlert, Grant, Patient, PatientDisclosure
from api.settings import Settings

ACTIVITY_CACHE_SECONDS = 600
ACTIVITY_DAYS_BACK, ACTIVITY_DAYS_AHEAD = 1, 6


class ExtractionGuard:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.window = timedelta(hours=settings.extraction_window_hours)
        self._activity: dict[int, tuple[float, int]] = {}

    def already_disclosed(self, partner_id: int, now: datetime) -> Exists:
        """For a query of patients: whether the partner already read each one at its practice in the
        window. Those cost nothing more, and a request that reads only those needs no write."""
        return exists().where(
            PatientDisclosure.partner_id == partner_id, PatientDisclosure.practice_id == Patient.practice_id,
            PatientDisclosure.patient_id == Patient.id, PatientDisclosure.disclosed_at >= now - self.window,
        )

    async def admit(
        self, session: AsyncSession, partner_id: int, key_id: int, practice_id: int, new: Collection[int], now: datetime
    ) -> None:
        """Record the disclosure of patients new in the window, or raise EXTRACTION_LIMIT_EXCEEDED; commits."""
        cutoff = now - self.window
        in_window = PatientDisclosure.partner_id == partner_id, PatientDisclosure.practice_id == practice_id
        threshold = await self.threshold(session, partner_id, practice_id, now)
        # Record first, count after: concurrent requests for the same patients then add them once
        # (the insert ignores rows already there), and the count includes every request's rows.
        # A patient counts from its first disclosure in the window: known ones cost no write.
        dialect_insert = sqlite_insert if session.bind.dialect.name == "sqlite" else postgresql_insert
        savepoint = await session.begin_nested()  # undone alone on refusal: loaded rows stay valid
        await session.execute(
            delete(PatientDisclosure).where(*in_window, PatientDisclosure.patient_id.in_(new), PatientDisclosure.disclosed_at < cutoff)
        )
        await session.execute(
            dialect_insert(PatientDisclosure).on_conflict_do_nothing(),
            [{"partner_id": partner_id, "practice_id": practice_id, "patient_id": p, "disclosed_at": now} for p in new],
        )
        count = (
            await session.execute(select(func.count()).where(*in_window, PatientDisclosure.disclosed_at >= cutoff))
        ).scalar_one()
        if count <= threshold:
            await savepoint.commit()
            await session.commit()
            return
        await savepoint.rollback()
        before = count - len(new)
        session.add(
            ExtractionAlert(
                partner_id=partner_id, practice_id=practice_id, key_id=key_id, raised_at=now,
                patients_in_window=before, patients_refused=len(new), threshold=threshold,
                window_hours=self.settings.extraction_window_hours,
            )
        )
        await session.commit()
        raise ApiError(
            ErrorCode.EXTRACTION_LIMIT_EXCEEDED,
            f"You have read {before} distinct patients of this practice in the last "
            f"{self.settings.extraction_window_hours} h; the limit is {threshold}. The operator has been alerted.",
            limit=threshold,
            windowHours=self.settings.extraction_window_hours,
        )

    async def threshold(self, session: AsyncSession, partner_id: int, practice_id: int, now: datetime) -> int:
        configured = (
            await session.execute(
                select(Grant.max_patients_per_window).where(
                    Grant.partner_id == partner_id, Grant.practice_id == practice_id, Grant.revoked_at.is_(None)
                )
            )
        ).scalar_one_or_none()
        if configured is not None:
            return configured
        weekly = await self._weekly_patients(session, practice_id, now)
        return max(self.settings.extraction_floor, math.ceil(self.settings.extraction_activity_factor * weekly))

    async def _weekly_patients(self, session: AsyncSession, practice_id: int, now: datetime) -> int:
        cached = self._activity.get(practice_id)
        if cached and time.monotonic() - cached[0] < ACTIVITY_CACHE_SECONDS:
            return cached[1]
        count = (
            await session.execute(
                select(func.count(func.distinct(Appointment.patient_id))).where(
                    Appointment.practice_id == practice_id,
                    Appointment.starts_at >= now - timedelta(days=ACTIVITY_DAYS_BACK),
                    Appointment.starts_at < now + timedelta(days=ACTIVITY_DAYS_AHEAD),
                )
            )
        ).scalar_one()
        self._activity[practice_id] = (time.monotonic(), count)
        return count
