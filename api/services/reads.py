"""Authorized reads: every query starts from the policy's filter, so the database only ever
returns rows the partner may see, and paging applies after that filter."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, Generic, TypeVar

from sqlalchemy import ScalarSelect, Select, func, literal, select, tuple_
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
class Slice:
    """Which page of a connection is asked for, as Relay writes it: `first` items after the cursor
    `after`, or the `last` items before the cursor `before` (backward paging). One of the two sizes
    is required, each from 1 to 100, so that every page is bounded and priced by its size."""

    first: int | None = None
    after: str | None = None
    last: int | None = None
    before: str | None = None

    @property
    def size(self) -> int:
        """The page's size, once `check_slice` has passed."""
        size = self.first if self.first is not None else self.last
        assert size is not None  # check_slice refuses a slice without a size
        return size

    @property
    def backward(self) -> bool:
        return self.last is not None


@dataclass(frozen=True)
class Page(Generic[Row]):
    rows: Sequence[Row]
    has_next_page: bool
    end_cursor: str | None
    # Each row's cursor, signed only when called: signing 100 cursors that nobody asked for is measurable.
    cursors: Sequence[Callable[[], str]]
    has_previous_page: bool = False
    start_cursor: str | None = None
    # How many rows the whole list holds, counted only when `totalCount` is selected (it is priced).
    count: Callable[[], Awaitable[int]] | None = None


def check_page_size(size: int, argument: str = "first") -> None:
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise bad_input(f"`{argument}` must be between 1 and {MAX_PAGE_SIZE}.", argument=argument)


def check_slice(window: Slice) -> None:
    """Exactly one page size; `after` goes with `first`, `before` with `last` (as GitHub's API)."""
    if (window.first is None) == (window.last is None):
        raise bad_input("Give either `first` (with `after`) or `last` (with `before`).", argument="first")
    if window.first is not None:
        check_page_size(window.first, "first")
        if window.before is not None:
            raise bad_input("`before` pages backward: use it with `last`.", argument="before")
    else:
        check_page_size(window.last, "last")  # type: ignore[arg-type]  # not None: checked above
        if window.after is not None:
            raise bad_input("`after` pages forward: use it with `first`.", argument="after")


@dataclass(frozen=True)
class PagedQuery:
    """One page of a keyset-paged list, as SQL: `statement` ordered and limited to one row more than
    the page (to tell whether another follows), `counted` the whole list (for `totalCount`)."""

    statement: Select[Any]
    counted: Select[Any]
    window: Slice
    cursor: str | None  # the one given (`after` forward, `before` backward)
    binding: Sequence[object]
    position_of: Callable[[Any], list[str]]


def paged(
    cursors: CursorCodec,
    statement: Select[Any],
    sort_columns: Sequence[Any],
    position_of: Callable[[Any], list[str]],
    binding: Sequence[object],
    window: Slice,
) -> PagedQuery:
    """Keyset paging (no OFFSET) over `statement`, ordered by `sort_columns`, forward from `after`
    or backward from `before`."""
    check_slice(window)
    cursor = window.before if window.backward else window.after
    counted = statement
    if cursor is not None:
        position = cursors.decode(cursor, binding)
        if len(position) != len(sort_columns):
            raise bad_input("Invalid cursor.")
        key, typed = tuple_(*sort_columns), tuple_(*_typed(position, sort_columns))
        statement = statement.where(key < typed if window.backward else key > typed)
    order = [column.desc() for column in sort_columns] if window.backward else list(sort_columns)
    return PagedQuery(
        statement.order_by(*order).limit(window.size + 1), counted, window, cursor, binding, position_of
    )


def page_of(uow: UnitOfWork, cursors: CursorCodec, query: PagedQuery, rows: Sequence[Row]) -> Page[Row]:
    """The page of `rows`, as `query.statement` read them. `hasPreviousPage` going forward
    (`hasNextPage` going backward) is true when a cursor was given: the page starts after an item
    (Relay lets a server say so)."""
    window, binding, position_of = query.window, query.binding, query.position_of
    size = window.size
    more = len(rows) > size
    page_rows = list(rows[:size])[::-1] if window.backward else list(rows[:size])
    sign = cursors.signer(binding)
    signers = [partial(sign, position_of(row)) for row in page_rows]  # read now, signed when asked
    start = sign(position_of(page_rows[0])) if page_rows else None
    end = sign(position_of(page_rows[-1])) if page_rows else None
    counted = query.counted

    async def count() -> int:
        return int((await uow.execute(select(func.count()).select_from(counted.subquery()))).scalar_one())

    return Page(
        page_rows,
        has_next_page=query.cursor is not None if window.backward else more,
        end_cursor=end,
        cursors=signers,
        has_previous_page=more if window.backward else query.cursor is not None,
        start_cursor=start,
        count=count,
    )


async def _page(
    uow: UnitOfWork,
    cursors: CursorCodec,
    statement: Select[Any],
    sort_columns: Sequence[Any],
    position_of: Any,
    binding: Sequence[object],
    window: Slice,
) -> Page[Any]:
    """The page of `statement`'s rows (see `paged`)."""
    query = paged(cursors, statement, sort_columns, position_of, binding, window)
    return page_of(uow, cursors, query, list((await uow.execute(query.statement)).scalars()))


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


async def practices(uow: UnitOfWork, cursors: CursorCodec, window: Slice) -> Page[Practice]:
    return await _page(
        uow,
        cursors,
        uow.authorized(Practice),
        [Practice.public_id],
        lambda p: [p.public_id],
        ("practices", uow.principal.partner_id),
        window,
    )


async def practitioners(
    uow: UnitOfWork, cursors: CursorCodec, practice_id: int, window: Slice
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
        window,
    )


@dataclass(frozen=True)
class AppointmentsAsked:
    """Which appointments a page lists: a practice's starting in [start, end), of one practitioner
    (None: any), of some `statuses` (None: any), changed at or after `updated_since` (None: whenever)."""

    practice_id: str  # public ids, as the client sent them
    start: datetime
    end: datetime
    practitioner_id: str | None = None
    statuses: Collection[AppointmentStatus] | None = None
    updated_since: datetime | None = None


async def appointments_query(
    uow: UnitOfWork, cursors: CursorCodec, asked: AppointmentsAsked, window: Slice
) -> PagedQuery:
    """A page of the appointments `asked` for: the window bounds every page. Its rows are
    appointments, or rows holding their columns under their names (api/compiled/)."""
    practice_public_id, start, end = asked.practice_id, asked.start, asked.end
    practitioner_public_id, statuses, updated_since = asked.practitioner_id, asked.statuses, asked.updated_since
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
    if statuses is not None:
        if not statuses:
            raise bad_input("`statuses` holds at least one status.", argument="statuses")
        statement = statement.where(Appointment.status.in_(sorted(set(statuses))))
    if updated_since is not None:
        if updated_since.tzinfo is None:
            raise bad_input("`updatedSince` needs a time zone offset.", argument="updatedSince")
        statement = statement.where(Appointment.updated_at >= updated_since)
    binding: tuple[object, ...] = (
        "appointments",
        uow.principal.partner_id,
        practice_public_id,
        start.isoformat(),
        end.isoformat(),
        practitioner_public_id,
        sorted(set(statuses)) if statuses is not None else None,
    )
    if updated_since is not None:  # appended only when given: cursors issued without it stay valid
        binding += (updated_since.astimezone(UTC).isoformat(),)
    return paged(
        cursors,
        statement,
        [Appointment.starts_at, Appointment.public_id],
        lambda a: [a.starts_at.isoformat(), a.public_id],
        binding,
        window,
    )


async def appointments(
    uow: UnitOfWork, cursors: CursorCodec, asked: AppointmentsAsked, window: Slice
) -> Page[Appointment]:
    """The page of `appointments_query`, NOT_FOUND when empty because the practice is hidden."""
    query = await appointments_query(uow, cursors, asked, window)
    page = page_of(uow, cursors, query, list((await uow.execute(query.statement)).scalars()))
    await check_practice_if_empty(uow, asked.practice_id, page.rows)
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
    sign = cursors.signer(binding)
    signers = [partial(sign, [change.seq]) for change in page_rows]
    # With nothing new, the end cursor stays where the client is, ready for the next poll.
    end = sign([page_rows[-1].seq if page_rows else position])

    async def count() -> int:
        total = 0
        for listed in (updated, deleted):
            total += int((await uow.execute(select(func.count()).select_from(listed.subquery()))).scalar_one())
        return total

    return Page(
        page_rows,
        has_next_page=len(rows) > first,
        end_cursor=end,
        cursors=signers,
        has_previous_page=since is not None,
        start_cursor=sign([page_rows[0].seq]) if page_rows else None,
        count=count,
    )
