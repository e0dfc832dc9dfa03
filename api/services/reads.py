"""Authorized reads: every query starts from the policy's filter, so the database only ever
returns rows the partner may see, and paging applies after that filter."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, Generic, TypeVar

from sqlalchemy import ScalarSelect, Select, literal, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from api.data.models import Appointment, AppointmentStatus, AppointmentTombstone, Patient, Practice, PracticeMembership
from api.errors import bad_input, not_found
from api.ids import kind_of
from api.protection.extraction import ExtractionGuard
from api.services.cursors import CursorCodec
from api.services.horizon import Horizons
from api.services.unit_of_work import UnitOfWork
from api.timeutil import UTCDateTime

MAX_PAGE_SIZE = 100
MAX_WINDOW_DAYS = 31

Row = TypeVar("Row")


@dataclass(frozen=True)
class Page(Generic[Row]):
    rows: Sequence[Row]
    has_next_page: bool
    end_cursor: str | None
    # Each row's cursor, signed only when called: signing 100 cursors that nobody asked for is measurable.
    cursors: Sequence[Callable[[], str]]


def check_page_size(first: int) -> None:
    if not 1 <= first <= MAX_PAGE_SIZE:
        raise bad_input(f"`first` must be between 1 and {MAX_PAGE_SIZE}.", argument="first")


async def _page(
    uow: UnitOfWork,
    cursors: CursorCodec,
    statement: Select[Any],
    sort_columns: Sequence[Any],
    position_of: Any,
    binding: Sequence[object],
    first: int,
    after: str | None,
) -> Page[Any]:
    """Keyset paging (no OFFSET) over `statement`, ordered by `sort_columns`."""
    check_page_size(first)
    if after is not None:
        position = cursors.decode(after, binding)
        if len(position) != len(sort_columns):
            raise bad_input("Invalid cursor.")
        statement = statement.where(tuple_(*sort_columns) > tuple_(*_typed(position, sort_columns)))
    rows = list((await uow.execute(statement.order_by(*sort_columns).limit(first + 1))).scalars())
    page_rows = rows[:first]
    signers = [partial(cursors.encode, binding, position_of(row)) for row in page_rows]
    end = cursors.encode(binding, position_of(page_rows[-1])) if page_rows else None
    return Page(page_rows, len(rows) > first, end, signers)


def _typed(position: list[object], columns: Sequence[Any]) -> list[Any]:
    values = []
    for value, column in zip(position, columns, strict=True):
        if not isinstance(value, str):
            raise bad_input("Invalid cursor.")
        try:
            typed = datetime.fromisoformat(value) if isinstance(column.type, UTCDateTime) else value
        except ValueError:
            raise bad_input("Invalid cursor.") from None
        # Typed literals, so the column's own conversion (UTC storage on SQLite) applies.
        values.append(literal(typed, column.type))
    return values


async def visible(
    uow: UnitOfWork, model: type[Any], public_id: str, action: str = "read", session: AsyncSession | None = None
) -> Any | None:
    """The row with this public id if the policy lets the partner `action` it, else None.
    `session`: a write's, inside its transaction (which holds the request's session)."""
    statement = uow.authorized(model, action).where(model.public_id == public_id)
    if session is None:
        return (await uow.execute(statement)).scalar_one_or_none()
    return (await session.execute(statement, {"request_time": uow.request_time})).scalar_one_or_none()


async def find_by_public_id(uow: UnitOfWork, model: type[Any], public_id: str) -> Any:
    """The visible row with this public id; NOT_FOUND alike for a missing or a hidden one."""
    row = await visible(uow, model, public_id)
    if row is None:
        raise not_found(model.__name__ if model is not PracticeMembership else "Practitioner")
    return row


NODE_MODELS: dict[str, type[Any]] = {
    "Practice": Practice,
    "Practitioner": PracticeMembership,
    "Patient": Patient,
    "Appointment": Appointment,
}


async def find_node(uow: UnitOfWork, public_id: str) -> tuple[str, Any]:
    kind = kind_of(public_id)
    if kind not in NODE_MODELS:
        raise not_found()
    return kind, await find_by_public_id(uow, NODE_MODELS[kind], public_id)


def visible_practice(uow: UnitOfWork, public_id: str) -> ScalarSelect[int]:
    """The id of the practice, if the partner may see it, as a subquery: the page's own query
    checks the practice, one statement less on every page that has rows."""
    if kind_of(public_id) != "Practice":
        raise bad_input("`practiceId` is not a practice id.", argument="practiceId")
    return (
        uow.authorized(Practice).where(Practice.public_id == public_id).with_only_columns(Practice.id).scalar_subquery()
    )


async def check_practice_if_empty(uow: UnitOfWork, public_id: str, rows: Sequence[object]) -> None:
    """An empty page may be a hidden practice: NOT_FOUND then, as for a missing one."""
    if not rows:
        await find_by_public_id(uow, Practice, public_id)


async def practices(uow: UnitOfWork, cursors: CursorCodec, first: int, after: str | None) -> Page[Practice]:
    return await _page(
        uow,
        cursors,
        uow.authorized(Practice),
        [Practice.public_id],
        lambda p: [p.public_id],
        ("practices", uow.principal.partner_id),
        first,
        after,
    )


async def practitioners(
    uow: UnitOfWork, cursors: CursorCodec, practice_id: int, first: int, after: str | None
) -> Page[PracticeMembership]:
    statement = (
        uow.authorized(PracticeMembership)
        .where(PracticeMembership.practice_id == practice_id)
        .options(joinedload(PracticeMembership.practitioner))
    )
    return await _page(
        uow,
        cursors,
        statement,
        [PracticeMembership.public_id],
        lambda m: [m.public_id],
        ("practitioners", uow.principal.partner_id, practice_id),
        first,
        after,
    )


async def appointments(
    uow: UnitOfWork,
    cursors: CursorCodec,
    practice_public_id: str,
    start: datetime,
    end: datetime,
    practitioner_public_id: str | None,
    status: AppointmentStatus | None,
    first: int,
    after: str | None,
) -> Page[Appointment]:
    if start.tzinfo is None or end.tzinfo is None:
        raise bad_input("`from` and `to` need a time zone offset, e.g. 2026-12-01T08:00:00+01:00.")
    if not start < end:
        raise bad_input("`from` must be before `to`.")
    if (end - start).total_seconds() > MAX_WINDOW_DAYS * 86400:
        raise bad_input(f"The window from `from` to `to` is at most {MAX_WINDOW_DAYS} days.")
    statement = uow.authorized(Appointment).where(
        Appointment.practice_id == visible_practice(uow, practice_public_id),
        Appointment.starts_at >= start,
        Appointment.starts_at < end,
    )
    if practitioner_public_id is not None:
        if kind_of(practitioner_public_id) != "Practitioner":
            raise bad_input("`practitionerId` is not a practitioner id.", argument="practitionerId")
        membership = await find_by_public_id(uow, PracticeMembership, practitioner_public_id)
        statement = statement.where(Appointment.practitioner_id == membership.practitioner_id)
    if status is not None:
        statement = statement.where(Appointment.status == status)
    binding = (
        "appointments",
        uow.principal.partner_id,
        practice_public_id,
        start.isoformat(),
        end.isoformat(),
        practitioner_public_id,
        status,
    )
    page = await _page(
        uow,
        cursors,
        statement,
        [Appointment.starts_at, Appointment.public_id],
        lambda a: [a.starts_at.isoformat(), a.public_id],
        binding,
        first,
        after,
    )
    await check_practice_if_empty(uow, practice_public_id, page.rows)
    return page


async def by_ids(uow: UnitOfWork, model: type[Any], ids: Sequence[int]) -> dict[int, Any]:
    rows = (await uow.execute(uow.authorized(model).where(model.id.in_(set(ids))))).scalars()
    return {row.id: row for row in rows}


@dataclass(frozen=True)
class LoadedPatient:
    row: Patient
    in_horizon: bool  # has an appointment inside the reading horizon that counts (api.services.horizon)


async def patients(
    uow: UnitOfWork, extraction: ExtractionGuard, horizons: Horizons, ids: Sequence[int]
) -> tuple[dict[int, LoadedPatient], set[int]]:
    """The visible patients among `ids`, whether each is inside the reading horizon, and which of
    them the distinct-patient budget must admit (one query: the others need no write)."""
    exempt = extraction.exempt(uow.principal.partner_id, uow.request_time)
    inside = horizons.patient_inside(uow.principal.partner_id)
    statement = uow.authorized(Patient).where(Patient.id.in_(set(ids))).add_columns(exempt, inside)
    rows = (await uow.execute(statement)).all()
    return (
        {patient.id: LoadedPatient(patient, bool(in_horizon)) for patient, _, in_horizon in rows},
        {patient.id for patient, free, _ in rows if not free},
    )


async def memberships(uow: UnitOfWork, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], PracticeMembership]:
    statement = (
        uow.authorized(PracticeMembership)
        .where(tuple_(PracticeMembership.practice_id, PracticeMembership.practitioner_id).in_(set(keys)))
        .options(joinedload(PracticeMembership.practitioner))
    )
    return {(m.practice_id, m.practitioner_id): m for m in (await uow.execute(statement)).scalars()}


@dataclass(frozen=True)
class Change:
    seq: int
    appointment_public_id: str
    practice_id: int
    appointment: Appointment | None  # None: deleted


async def changes(
    uow: UnitOfWork, cursors: CursorCodec, practice_public_id: str, since: str | None, first: int
) -> Page[Change]:
    """Appointments changed, and deleted, after the `since` cursor, in change order."""
    check_page_size(first)
    practice = visible_practice(uow, practice_public_id)
    binding = ("changes", uow.principal.partner_id, practice_public_id)
    position = 0
    if since is not None:
        decoded = cursors.decode(since, binding)
        if len(decoded) != 1 or not isinstance(decoded[0], int):
            raise bad_input("Invalid cursor.")
        position = decoded[0]
    updated = uow.authorized(Appointment).where(Appointment.practice_id == practice, Appointment.change_seq > position)
    deleted = uow.authorized(AppointmentTombstone).where(
        AppointmentTombstone.practice_id == practice, AppointmentTombstone.change_seq > position
    )
    rows = [
        Change(a.change_seq, a.public_id, a.practice_id, a)
        for a in (await uow.execute(updated.order_by(Appointment.change_seq).limit(first + 1))).scalars()
    ] + [
        Change(t.change_seq, t.public_id, t.practice_id, None)
        for t in (await uow.execute(deleted.order_by(AppointmentTombstone.change_seq).limit(first + 1))).scalars()
    ]
    await check_practice_if_empty(uow, practice_public_id, rows)
    rows.sort(key=lambda change: change.seq)
    page_rows = rows[:first]
    signers = [partial(cursors.encode, binding, [change.seq]) for change in page_rows]
    # With nothing new, the end cursor stays where the client is, ready for the next poll.
    end = cursors.encode(binding, [page_rows[-1].seq if page_rows else position])
    return Page(page_rows, len(rows) > first, end, signers)
