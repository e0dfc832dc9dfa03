"""Booking, rescheduling and cancelling: authorized by the policy, validated, idempotent.

Every write bumps the change counter first, inside its transaction: that serializes writers
(so two partners cannot book the same slot at once) and orders the sync feed.
Business refusals (slot taken, time in the past...) are returned as `Refusal`s, distinct from
authorization errors (NOT_FOUND / FORBIDDEN), which are raised.
No write commits here: each runs in the unit of work's `write`, which the pipeline commits with the
request's access record, or rolls back when that record cannot be written (api/http/pipeline.py).
A refused slot keeps its bump of the change counter: the feed's positions may skip a number.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.data.models import (
    Appointment,
    AppointmentStatus,
    ChangeCounter,
    Gender,
    IdempotencyRecord,
    Patient,
    Practice,
    PracticeMembership,
)
from api.errors import ApiError, ErrorCode, bad_input, not_found
from api.ids import kind_of
from api.protection import churn, disruption
from api.protection.extraction import ExtractionGuard
from api.scopes import Scope
from api.services import reads
from api.services.unit_of_work import UnitOfWork

MAX_DURATION = timedelta(hours=8)
MAX_AHEAD = timedelta(days=2 * 365)  # no agenda is kept further: a booking in year 9999 is a mistake or a probe
Record = TypeVar("Record", Practice, Appointment)  # what a write may be authorized on


class RefusalReason(enum.Enum):
    SLOT_TAKEN = "The practitioner already has an appointment at this practice at that time."
    IN_THE_PAST = "Appointments can only be booked or moved to the future."
    ENDS_BEFORE_START = "The end must come after the start."
    TOO_LONG = f"An appointment lasts at most {MAX_DURATION.seconds // 3600} hours."
    TOO_FAR_AHEAD = f"Appointments can be booked or moved at most {MAX_AHEAD.days} days ahead."
    PRACTITIONER_NOT_AT_PRACTICE = "This practitioner does not work at this practice."
    PATIENT_NOT_AT_PRACTICE = "This patient is not in this practice's file."
    NOT_CHANGEABLE = "Only a booked appointment can be rescheduled or cancelled."


@dataclass(frozen=True)
class Refusal:
    reason: RefusalReason
    about: Appointment | None = None  # the appointment whose state the refusal tells: disclosed, for the ledger


@dataclass(frozen=True)
class NewPatient:
    first_name: str
    last_name: str
    gender: Gender
    birth_date: date | None
    phone: str | None
    email: str | None


async def next_change_seq(session: AsyncSession) -> int:
    """Take the next change sequence number, locking the counter until commit."""
    value = (
        await session.execute(
            update(ChangeCounter)
            .where(ChangeCounter.id == 1)
            .values(value=ChangeCounter.value + 1)
            .returning(ChangeCounter.value)
        )
    ).scalar_one_or_none()
    if value is None:
        await session.execute(insert(ChangeCounter).values(id=1, value=1))
        value = 1
    return value


def _canonical(value: object) -> object:
    """A value as its meaning: an instant in UTC whatever offset it was written with, a date or an
    enum by its ISO form or value (json has no other way to write them)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    raise TypeError(f"no canonical form for {type(value).__name__}")


def request_hash(operation: str, payload: dict[str, Any]) -> str:
    """What an idempotency key is bound to: the request's meaning, not its text, so that a retry
    writing the same instants with another offset (`Z` instead of `-04:00`) is the same request."""
    canonical = json.dumps([operation, payload], sort_keys=True, separators=(",", ":"), default=_canonical)
    return hashlib.sha256(canonical.encode()).hexdigest()


def text_request_hash(operation: str, payload: dict[str, Any]) -> str:
    """The digest of records written before `request_hash` (of the input's text, offsets included):
    a retry of such a request, sent again as it was, still replays."""
    return hashlib.sha256(json.dumps([operation, payload], sort_keys=True, default=str).encode()).hexdigest()


async def _replayed(
    session: AsyncSession, ctx: UnitOfWork, key: str | None, operation: str, payload: dict[str, Any]
) -> Appointment | None:
    if key is None:
        return None
    record = (
        await session.execute(
            select(IdempotencyRecord).where(
                IdempotencyRecord.partner_id == ctx.principal.partner_id, IdempotencyRecord.key == key
            )
        )
    ).scalar_one_or_none()
    if record is None:
        return None
    digests = (request_hash(operation, payload), text_request_hash(operation, payload))
    if record.operation != operation or record.request_hash not in digests:
        raise bad_input("This idempotency key was used for another request; use a new key.", argument="idempotencyKey")
    # as committed: this session may hold it as it was read before the first attempt moved it
    return await session.get(Appointment, record.appointment_id, populate_existing=True)


def _remember(
    session: AsyncSession, ctx: UnitOfWork, key: str | None, operation: str, digest: str, appointment: Appointment
) -> None:
    if key is not None:
        session.add(
            IdempotencyRecord(
                partner_id=ctx.principal.partner_id,
                key=key,
                operation=operation,
                request_hash=digest,
                appointment_id=appointment.id,
                created_at=ctx.request_time,
            )
        )


def changeable(appointment: Appointment) -> bool:
    """Whether a partner may still move or cancel it: only while it is booked (the one rule of both)."""
    return appointment.status == AppointmentStatus.BOOKED


async def _authorized(
    session: AsyncSession, ctx: UnitOfWork, model: type[Record], action: str, public_id: str, what: str
) -> Record:
    """The row if the policy allows `action` on it; FORBIDDEN if the partner may only read it,
    NOT_FOUND if it may not even see it (no existence oracle)."""
    if kind_of(public_id) != model.__name__:
        raise not_found(what)  # not even an id of this kind: the database is not asked
    row: Record | None = await reads.visible(ctx, model, public_id, action, session)
    if row is not None:
        return row
    if await reads.visible(ctx, model, public_id, session=session) is not None:
        raise ApiError(
            ErrorCode.FORBIDDEN,
            f"Your grant at this practice does not allow you to {action} {what}s: it needs "
            f"{Scope.APPOINTMENTS_WRITE.value}.",
            requiredScopes=[Scope.APPOINTMENTS_WRITE.value],
        )
    raise not_found(what)


def _check_times(ctx: UnitOfWork, starts_at: datetime, ends_at: datetime) -> Refusal | None:
    if starts_at.tzinfo is None or ends_at.tzinfo is None:
        raise bad_input("`startsAt` and `endsAt` need a time zone offset.")
    if starts_at <= ctx.request_time:
        return Refusal(RefusalReason.IN_THE_PAST)
    if ends_at > ctx.request_time + MAX_AHEAD:
        return Refusal(RefusalReason.TOO_FAR_AHEAD)
    if ends_at <= starts_at:
        return Refusal(RefusalReason.ENDS_BEFORE_START)
    if ends_at - starts_at > MAX_DURATION:
        return Refusal(RefusalReason.TOO_LONG)
    return None


async def _slot_taken(
    session: AsyncSession,
    practice_id: int,
    practitioner_id: int,
    starts_at: datetime,
    ends_at: datetime,
    ignore: int | None,
) -> bool:
    """Whether the practitioner's agenda at this practice overlaps the times. Only this practice's:
    a refusal for a practitioner's appointment at another practice would show a partner an agenda
    its grants do not cover (one free booking, or moving its own, per probe)."""
    overlapping = select(Appointment.id).where(
        Appointment.practice_id == practice_id,
        Appointment.practitioner_id == practitioner_id,
        Appointment.status != AppointmentStatus.CANCELLED,
        Appointment.starts_at < ends_at,
        Appointment.ends_at > starts_at,
    )
    if ignore is not None:
        overlapping = overlapping.where(Appointment.id != ignore)
    return (await session.execute(overlapping.limit(1))).first() is not None


async def book(
    ctx: UnitOfWork,
    practice_id: str,
    practitioner_id: str,
    patient_id: str | None,
    new_patient: NewPatient | None,
    starts_at: datetime,
    ends_at: datetime,
    reason: str | None,
    idempotency_key: str | None,
) -> Appointment | Refusal:
    if (patient_id is None) == (new_patient is None):
        raise bad_input("Give either `patientId` or `newPatient`.")
    if kind_of(practice_id) != "Practice":
        raise not_found("practice")
    payload = {
        "practice": practice_id,
        "practitioner": practitioner_id,
        "patient": patient_id,
        "new_patient": asdict(new_patient) if new_patient else None,
        "starts": starts_at,
        "ends": ends_at,
        "reason": reason,
    }
    digest = request_hash("book", payload)
    async with ctx.write() as session:
        # authorized first, as a new request: a retry tells nothing where the partner may no longer write
        practice = await _authorized(session, ctx, Practice, "book", practice_id, "practice")
        # A retry of a committed attempt, before the checks that may no longer hold (its time passed); a
        # retry of one still in flight is found again once it holds the counter's lock (below).
        replay = await _replayed(session, ctx, idempotency_key, "book", payload)
        if replay is not None:
            return replay
        refusal = _check_times(ctx, starts_at, ends_at)
        if refusal:
            return refusal
        membership = (
            await session.execute(
                select(PracticeMembership).where(
                    PracticeMembership.public_id == practitioner_id, PracticeMembership.practice_id == practice.id
                )
            )
        ).scalar_one_or_none()
        if membership is None:
            return Refusal(RefusalReason.PRACTITIONER_NOT_AT_PRACTICE)
        if patient_id is not None:
            patient = (
                await session.execute(
                    select(Patient).where(Patient.public_id == patient_id, Patient.practice_id == practice.id)
                )
            ).scalar_one_or_none()
            if patient is None:
                return Refusal(RefusalReason.PATIENT_NOT_AT_PRACTICE)
        seq = await next_change_seq(session)
        if (replay := await _replayed(session, ctx, idempotency_key, "book", payload)) is not None:
            return replay  # an attempt that was in flight when this retry began: committed by now
        if await _slot_taken(session, practice.id, membership.practitioner_id, starts_at, ends_at, None):
            return Refusal(RefusalReason.SLOT_TAKEN)
        if new_patient is not None:
            patient = Patient(
                practice_id=practice.id,
                created_at=ctx.request_time,
                source_partner_id=ctx.principal.partner_id,
                **asdict(new_patient),
            )
            session.add(patient)
            await session.flush()
        assert patient is not None  # one of patient_id and new_patient, checked above
        appointment = Appointment(
            practice_id=practice.id,
            practitioner_id=membership.practitioner_id,
            patient_id=patient.id,
            starts_at=starts_at.astimezone(UTC),  # answered in UTC, the first time as on a replay
            ends_at=ends_at.astimezone(UTC),
            status=AppointmentStatus.BOOKED,
            reason=reason,
            source_partner_id=ctx.principal.partner_id,
            time_set_by_partner_id=ctx.principal.partner_id,
            created_at=ctx.request_time,
            updated_at=ctx.request_time,
            change_seq=seq,
        )
        session.add(appointment)
        await session.flush()
        _remember(session, ctx, idempotency_key, "book", digest, appointment)
        await session.flush()
        return appointment


async def reschedule(
    ctx: UnitOfWork,
    extraction: ExtractionGuard,
    appointment_id: str,
    starts_at: datetime,
    ends_at: datetime,
    idempotency_key: str | None,
) -> Appointment | Refusal:
    """Move a booked appointment; one the partner did not book counts against its change limit
    (api.protection.disruption)."""
    payload = {"appointment": appointment_id, "starts": starts_at, "ends": ends_at}
    digest = request_hash("reschedule", payload)
    async with ctx.write() as session:
        appointment = await _authorized(session, ctx, Appointment, "reschedule", appointment_id, "appointment")
        replay = await _replayed(session, ctx, idempotency_key, "reschedule", payload)
        if replay is not None:
            return replay
        refusal = _check_times(ctx, starts_at, ends_at)  # first: a refusal of the times tells nothing of it
        if refusal:
            return refusal
        seq = await next_change_seq(session)
        if (replay := await _replayed(session, ctx, idempotency_key, "reschedule", payload)) is not None:
            return replay  # as in `book`
        if not changeable(appointment):
            return Refusal(RefusalReason.NOT_CHANGEABLE, about=appointment)
        taken = await _slot_taken(
            session, appointment.practice_id, appointment.practitioner_id, starts_at, ends_at, appointment.id
        )
        if taken:
            return Refusal(RefusalReason.SLOT_TAKEN)
        await disruption.admit_change(session, ctx, extraction.settings, appointment, extraction.on_alert)
        appointment.starts_at, appointment.ends_at = starts_at.astimezone(UTC), ends_at.astimezone(UTC)
        appointment.time_set_by_partner_id = ctx.principal.partner_id  # a time a partner set opens nothing (horizon.py)
        appointment.updated_at, appointment.change_seq = ctx.request_time, seq
        _remember(session, ctx, idempotency_key, "reschedule", digest, appointment)
        await session.flush()
        return appointment


async def cancel(ctx: UnitOfWork, extraction: ExtractionGuard, appointment_id: str) -> Appointment | Refusal:
    """Cancel a booked appointment, the one a partner may also reschedule (an arrived, fulfilled or
    missed one is history: NOT_CHANGEABLE); cancelling a cancelled appointment changes nothing (safe
    to retry). A partner's own bookings cancelled in quick succession raise a churn alert
    (api.protection.churn); one it did not book counts against its change limit (api.protection.disruption)."""
    async with ctx.write() as session:
        appointment = await _authorized(session, ctx, Appointment, "cancel", appointment_id, "appointment")
        if appointment.status == AppointmentStatus.CANCELLED:
            return appointment
        if not changeable(appointment):
            return Refusal(RefusalReason.NOT_CHANGEABLE, about=appointment)
        seq = await next_change_seq(session)  # first, as every write: the counter's lock orders them all
        await disruption.admit_change(session, ctx, extraction.settings, appointment, extraction.on_alert)
        appointment.status = AppointmentStatus.CANCELLED
        appointment.updated_at, appointment.change_seq = ctx.request_time, seq
        await session.flush()
        alerted = await churn.after_cancel(
            session, extraction.settings, appointment, ctx.principal.partner_id, ctx.principal.key_id, ctx.request_time
        )
        await ctx.commit(extraction.on_alert if alerted else None)  # the alert is sent once committed
    return appointment
