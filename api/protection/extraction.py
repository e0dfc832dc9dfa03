"""The distinct-patient budget: the defence against bulk extraction.

Per partner and practice, the patients whose data was returned are counted over two windows, 24 h
and 30 days, each against its limit: a multiple of the practice's typical week
(`api.protection.activity`, which no partner can inflate) with a floor, and never above the
grant's hard cap; or the grant's explicit `max_patients_per_window` for the short window. The short
budget stops a day's bulk read, the long one an extractor who stays just under it day after day.

Crossing a configured fraction of a budget raises a warning; going past it refuses the new patients
(the client is not told the limit nor how far it got: the figures go to the alert) and, unless the
partner is configured otherwise, quarantines the key until an operator releases it. Every alert is
recorded with its webhook outbox row in the same transaction (`api.ledger.alerts`).

Concurrent requests of one partner at one practice are serialized on PostgreSQL by a transaction
advisory lock on the pair, so that each counts what the others recorded (under READ COMMITTED,
record-then-count lets them miss each other); SQLite lets one writer in at a time.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    bindparam,
    case,
    exists,
    false,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, aliased

from api.data.models import (
    AccessRecord,
    AlertKind,
    Appointment,
    Disclosure,
    ExtractionAlert,
    Grant,
    Partner,
    PartnerKey,
    Patient,
    PatientDisclosure,
)
from api.errors import ApiError, ErrorCode
from api.ledger import alerts
from api.protection.activity import weekly_patients
from api.scopes import LedgerGroup, Scope
from api.settings import Settings

__all__ = ["Budget", "Commit", "ExtractionGuard", "contain", "extraction_refused"]

logger = logging.getLogger(__name__)

# Commits the caller's transaction, then calls what is given (the webhook's wake-up). In a request,
# the unit of work's `commit`: joined to a held write, it commits with the write's access record.
Commit = Callable[[Callable[[], None] | None], Awaitable[None]]
# Registers a step that must stand even if the request's held write is rolled back (UnitOfWork.keep).
Keep = Callable[[Callable[[AsyncSession], Awaitable[object]], Callable[[], None] | None], None]


def _committing(session: AsyncSession) -> Commit:
    async def commit(after: Callable[[], None] | None) -> None:
        await session.commit()
        if after is not None:
            after()

    return commit


_ADVISORY_LOCK = text("SELECT pg_advisory_xact_lock(:key)")
_REASON_BIT = cast(LedgerGroup, Scope.APPOINTMENTS_REASON.group).bit


@dataclass(frozen=True)
class Budget:
    """One window of the distinct-patient budget, with its limit for a partner at a practice."""

    window: timedelta
    limit: int
    first_at: InstrumentedAttribute[datetime]  # the column where a patient's stay in this window starts

    @property
    def window_hours(self) -> int:
        return round(self.window.total_seconds() / 3600)


def extraction_refused(quarantined: bool) -> ApiError:
    """What the client is told: neither the limit nor the headroom, which would tell an extractor
    how far to go next time."""
    then = " This key is quarantined until an operator releases it." if quarantined else ""
    return ApiError(
        ErrorCode.EXTRACTION_LIMIT_EXCEEDED,
        f"Too many distinct patients of this practice were read; the operator has been alerted.{then}",
        quarantined=quarantined,
    )


async def contain(
    session: AsyncSession,
    keep: Keep | None,
    on_alert: Callable[[], None],
    partner_id: int,
    key_id: int,
    now: datetime,
    refusals: list[alerts.NewAlert],
    quarantined: alerts.NewAlert,
    contributors: Callable[[AsyncSession], Awaitable[Mapping[int, int]]] | None = None,
) -> tuple[bool, bool]:
    """A limit's refusal: its alerts and, unless the partner's refusals do not quarantine, the key's
    quarantine with `quarantined`, and that of the partner's other keys that spent much of the same
    budget (`contributors`: each with the patients it was shown), each with its own alert, in the
    session; handed to `keep` too, so that they stand whatever becomes of a held write. Whether the key
    is quarantined, and whether any alert was raised."""
    quarantines = bool(
        (await session.execute(select(Partner.quarantine_on_refusal).where(Partner.id == partner_id))).scalar_one()
    )

    async def quarantine(session: AsyncSession, alert: alerts.NewAlert) -> ExtractionAlert | None:
        key = update(PartnerKey).where(PartnerKey.id == alert.key_id, PartnerKey.quarantined_at.is_(None))
        done = await session.execute(key.values(quarantined_at=now).execution_options(synchronize_session=False))
        return await alerts.record(session, alert) if cast(CursorResult[Any], done).rowcount else None

    async def step(session: AsyncSession) -> bool:
        raised = [await alerts.record(session, alert) for alert in refusals]
        if quarantines:
            raised.append(await quarantine(session, quarantined))
            # each other key with its own evidence: the patients it took, none asked for in this request
            for other, shown in sorted((await _others(session, contributors, key_id)).items()):
                raised.append(await quarantine(session, replace(quarantined, key_id=other, patients_in_window=shown,
                                                                patients_refused=0)))  # fmt: skip
        return any(raised)

    raised = await step(session)
    if keep is not None:
        keep(step, on_alert)
    return quarantines, raised


async def _others(
    session: AsyncSession, contributors: Callable[[AsyncSession], Awaitable[Mapping[int, int]]] | None, key_id: int
) -> Mapping[int, int]:
    """The other keys to quarantine, searched in a savepoint: a search that fails (past the statement
    timeout, on a partner's huge ledger) leaves the refusal, its alerts and the refused key's quarantine
    standing, instead of rolling them all back with it (outside review, helper 52)."""
    if contributors is None:
        return {}
    try:
        async with session.begin_nested():
            found = await contributors(session)
    except Exception:
        logger.warning("the other keys that spent the refused budget could not be searched", exc_info=True)
        return {}
    return {key: count for key, count in found.items() if key != key_id}


async def _keys_shown_half(
    session: AsyncSession, partner_id: int, practice_id: int, budget: Budget, now: datetime
) -> dict[int, int]:
    """The partner's keys that the ledger shows were given at least half of the refused budget's limit
    of the practice's patients in its window, each with how many. They spent most of the budget: the
    refused key alone let a thief with another key read just under the limit, and the partner's own
    key, the next to read there, be quarantined in its stead while the thief's read on (outside review,
    helper 49). A threshold the refused request cannot move: measured against the refused key's own
    reads, a small request let any key take down the one that had read most (helper 51). Every
    legitimate profile stays under half of each limit; a thief under it too is not quarantined."""
    shown = func.count(Disclosure.patient_id.distinct())
    statement = (
        select(AccessRecord.key_id, shown)
        .join(Disclosure, (Disclosure.access_id == AccessRecord.id) & (Disclosure.at == AccessRecord.at))
        .outerjoin(Patient, Patient.id == Disclosure.patient_id)  # a patient since deleted counts
        .where(
            ~_created_by(partner_id),  # its own bookings read back spend nothing of the budget
            Disclosure.partner_id == partner_id,
            Disclosure.at >= now - budget.window,
            Disclosure.practice_id == practice_id,
            Disclosure.patient_id.is_not(None),
            AccessRecord.key_id.is_not(None),
            # what the budget counts: a patient's record (with their appointment or alone), or the
            # reason of their appointment (their health data); not an appointment's times alone
            or_(
                Disclosure.patient_field_groups > 0,
                Disclosure.appointment_id.is_(None),
                Disclosure.field_groups.op("&")(_REASON_BIT) != 0,
            ),
        )
        .group_by(AccessRecord.key_id)
        .having(shown >= math.ceil(budget.limit / 2))
    )
    return {key: count for key, count in await session.execute(statement) if key}


def _lock_key(partner_id: int, practice_id: int) -> int:
    """A signed 64-bit advisory lock key for the pair (a collision only serializes two pairs)."""
    digest = hashlib.blake2b(f"extraction:{partner_id}:{practice_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


_BOOKED = aliased(Appointment, name="booked")  # not the page's own appointments, which it would correlate to


@lru_cache(maxsize=1024)
def exempt(partner_id: int) -> ColumnElement[bool]:
    """For a query of patients: whether each costs the partner nothing more, so that a request
    reading only those needs no write: the partner already read it at its practice in the short
    window, or created it itself with a booking and nobody else booked them since (what it reads back
    is then what it wrote: nothing from the practice's file, and an extractor's invented patients cannot
    change what the budget lets through). Once the practice books them, their file holds the
    practice's data (its appointments' reasons, the reading horizon they open): they count as any
    patient. Built once per partner: the window's start is a named parameter (`ExtractionGuard.exempt_parameters`)."""
    return or_(
        exists().where(
            PatientDisclosure.partner_id == partner_id, PatientDisclosure.practice_id == Patient.practice_id,
            PatientDisclosure.patient_id == Patient.id,
            PatientDisclosure.day_first_at >= bindparam("exempt_since", type_=PatientDisclosure.day_first_at.type),
        ),
        _created_by(partner_id),
    )


def _created_by(partner_id: int) -> ColumnElement[bool]:
    """For a query of patients: the partner created it with a booking, and nobody else booked them since."""
    # A CASE, not an AND: the practice's own patients (source NULL, so the test NULL) skip the lookup.
    return case(
        (
            Patient.source_partner_id == partner_id,
            ~exists().where(
                _BOOKED.patient_id == Patient.id,
                or_(_BOOKED.source_partner_id.is_(None), _BOOKED.source_partner_id != partner_id),
            ),
        ),
        else_=false(),
    )


class ExtractionGuard:
    def __init__(self, settings: Settings, on_alert: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self.day = timedelta(hours=settings.extraction_window_hours)
        self.month = timedelta(days=settings.extraction_long_window_days)
        self.on_alert = on_alert or (lambda: None)  # wakes the webhook sender of this process

    def exempt_parameters(self, now: datetime) -> dict[str, datetime]:
        """The value of `exempt`'s parameter at this request's time: the short window's start."""
        return {"exempt_since": now - self.day}

    async def budgets(
        self, session: AsyncSession, partner_id: int, practice_id: int, now: datetime
    ) -> tuple[Budget, Budget]:
        """The short and long budgets of the partner at the practice."""
        s = self.settings
        grant = (
            await session.execute(
                select(Grant.max_patients_per_window, Grant.patients_daily_cap, Grant.patients_monthly_cap).where(
                    Grant.partner_id == partner_id, Grant.practice_id == practice_id, Grant.revoked_at.is_(None)
                )
            )
        ).first()
        explicit, day_cap, month_cap = grant if grant is not None else (None, None, None)
        weekly = await weekly_patients(session, s, practice_id, now)
        day_limit = min(
            day_cap or s.extraction_daily_cap, max(s.extraction_floor, math.ceil(s.extraction_activity_factor * weekly))
        )
        month_limit = min(
            month_cap or s.extraction_long_cap,
            max(s.extraction_long_floor, math.ceil(s.extraction_long_factor * weekly)),
        )
        if explicit is not None:
            # An operator's explicit daily limit replaces the computed one; the long window never
            # allows less than one such day.
            day_limit, month_limit = explicit, max(month_limit, explicit)
        return Budget(self.day, day_limit, PatientDisclosure.day_first_at), Budget(
            self.month, month_limit, PatientDisclosure.month_first_at
        )

    async def admit(
        self,
        session: AsyncSession,
        partner_id: int,
        key_id: int,
        practice_id: int,
        new: Collection[int],
        now: datetime,
        commit: Commit | None = None,
        keep: Keep | None = None,
    ) -> None:
        """Record the disclosure of patients new in the short window, or raise EXTRACTION_LIMIT_EXCEEDED;
        commits (with `commit`, default the session's own). A refusal's alerts and quarantine are
        also handed to `keep`: they stand even if a write held by the request is rolled back.

        A key quarantined since its request was authenticated (by a refusal in this request or a
        concurrent one) is admitted no new patient."""
        commit = commit or _committing(session)
        if session.get_bind().dialect.name == "postgresql":
            await session.execute(_ADVISORY_LOCK, {"key": _lock_key(partner_id, practice_id)})
        quarantined = select(PartnerKey.quarantined_at).where(PartnerKey.id == key_id)
        if (await session.execute(quarantined)).scalar_one_or_none() is not None:
            await commit(None)  # ends the lock (with a held write, at its commit); a rollback would expire loaded rows
            raise extraction_refused(quarantined=True)
        pair = (PatientDisclosure.partner_id == partner_id, PatientDisclosure.practice_id == practice_id)
        budgets = await self.budgets(session, partner_id, practice_id, now)
        known = {
            row.patient_id: row
            for row in await session.execute(
                select(
                    PatientDisclosure.patient_id, PatientDisclosure.day_first_at, PatientDisclosure.month_first_at
                ).where(*pair, PatientDisclosure.patient_id.in_(set(new)))
            )
        }
        counts: list[tuple[Budget, int, int]] = []  # budget, already in its window, new to it
        for budget in budgets:
            cutoff = now - budget.window
            fresh = sum(1 for p in set(new) if p not in known or getattr(known[p], budget.first_at.key) < cutoff)
            if fresh:
                held = (
                    await session.execute(select(func.count()).where(*pair, budget.first_at >= cutoff))
                ).scalar_one()
                counts.append((budget, held, fresh))
        if not counts:
            await commit(None)
            return
        over = [(b, held, fresh) for b, held, fresh in counts if held + fresh > b.limit]
        if over:
            await self._refuse(session, commit, keep, partner_id, key_id, practice_id, over, now)
        await self._record(session, partner_id, practice_id, new, known, now)
        raised = [
            await alerts.record(
                session,
                alerts.NewAlert(
                    AlertKind.WARNING,
                    partner_id,
                    practice_id,
                    key_id,
                    now,
                    held + fresh,
                    b.limit,
                    b.window_hours,
                    fraction=f,
                ),
            )
            for b, held, fresh in counts
            for f in self.settings.extraction_warning_fractions
            if held < f * b.limit <= held + fresh
        ]
        await commit(self.on_alert if any(raised) else None)

    async def _record(
        self,
        session: AsyncSession,
        partner_id: int,
        practice_id: int,
        new: Collection[int],
        known: Mapping[int, object],
        now: datetime,
    ) -> None:
        day_cutoff, month_cutoff = now - self.day, now - self.month
        unseen = [p for p in set(new) if p not in known]
        if unseen:
            await session.execute(
                insert(PatientDisclosure),
                [
                    {
                        "partner_id": partner_id,
                        "practice_id": practice_id,
                        "patient_id": p,
                        "day_first_at": now,
                        "month_first_at": now,
                    }
                    for p in unseen
                ],
            )
        returning = [p for p in set(new) if p in known]
        if returning:
            restarted: ColumnElement[datetime] = case(
                (PatientDisclosure.month_first_at < month_cutoff, now), else_=PatientDisclosure.month_first_at
            )
            await session.execute(
                update(PatientDisclosure)
                .where(
                    PatientDisclosure.partner_id == partner_id,
                    PatientDisclosure.practice_id == practice_id,
                    PatientDisclosure.patient_id.in_(returning),
                    PatientDisclosure.day_first_at < day_cutoff,
                )
                .values(day_first_at=now, month_first_at=restarted)
                .execution_options(synchronize_session=False)
            )

    async def _refuse(
        self,
        session: AsyncSession,
        commit: Commit,
        keep: Keep | None,
        partner_id: int,
        key_id: int,
        practice_id: int,
        over: list[tuple[Budget, int, int]],
        now: datetime,
    ) -> None:
        def alert(kind: AlertKind, budget: Budget, held: int, fresh: int) -> alerts.NewAlert:
            return alerts.NewAlert(
                kind, partner_id, practice_id, key_id, now, held, budget.limit, budget.window_hours,
                patients_refused=fresh,
            )

        refusals = [alert(AlertKind.REFUSAL, b, held, fresh) for b, held, fresh in over]

        async def contributors(session: AsyncSession) -> dict[int, int]:
            found: dict[int, int] = {}
            for budget, _, _ in over:  # both windows, when a request went past both
                for key, shown in (await _keys_shown_half(session, partner_id, practice_id, budget, now)).items():
                    found[key] = max(shown, found.get(key, 0))
            return found

        quarantines, raised = await contain(
            session, keep, self.on_alert, partner_id, key_id, now, refusals, alert(AlertKind.QUARANTINE, *over[0]),
            contributors,
        )  # fmt: skip
        await commit(self.on_alert if raised else None)
        raise extraction_refused(quarantines)
