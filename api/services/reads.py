"""Authorized reads: every query starts from the policy's filter, so the database only ever
returns rows the partner may see, and paging applies after that filter."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Generic, TypeVar

from sqlalchemy import Integer, ScalarSelect, Select, bindparam, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from api.data.models import Appointment, AppointmentStatus, AppointmentTombstone, Patient, Practice, PracticeMembership
from api.errors import bad_input, not_found
from api.ids import kind_of
from api.protection.extraction import ExtractionGuard
from api.protection.extraction import exempt as exempt_patients
from api.services.cursors import CursorCodec
from api.services.horizon import Horizons, patient_inside
from api.services.unit_of_work import UnitOfWork
from api.timeutil import UTCDateTime

MAX_PAGE_SIZE = 100
MAX_WINDOW_DAYS = 31

# `select(model)` narrowed to the rows the partner may read (`UnitOfWork.authorized`).
Authorized = Callable[[type[Any]], Select[Any]]

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
    # Each row's cursor, sealed only when called: sealing 100 cursors that nobody asked for is measurable.
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
    the page (to tell whether another follows), `counted` the whole list (for `totalCount`), both
    run with `parameters`, the values of their named parameters."""

    statement: Select[Any]
    counted: Select[Any]
    window: Slice
    cursor: str | None  # the one given (`after` forward, `before` backward)
    binding: Sequence[object]
    position_of: Callable[[Any], list[str]]
    parameters: Mapping[str, object] = field(default_factory=dict)


def paged(
    cursors: CursorCodec,
    statement: Select[Any],
    sort_columns: Sequence[Any],
    position_of: Callable[[Any], list[str]],
    binding: Sequence[object],
    window: Slice,
    parameters: Mapping[str, object] | None = None,
) -> PagedQuery:
    """Keyset paging (no OFFSET) over `statement` (run with `parameters`), ordered by `sort_columns`,
    forward from `after` or backward from `before`."""
    cursor, position = cursor_position(cursors, window, binding, sort_columns)
    paged_statement = page_statement(statement, tuple(sort_columns), cursor is not None, window.backward)
    return PagedQuery(
        paged_statement, statement, window, cursor, binding, position_of, {**(parameters or {}), **position}
    )


def cursor_position(
    cursors: CursorCodec, window: Slice, binding: Sequence[object], sort_columns: Sequence[Any]
) -> tuple[str | None, dict[str, object]]:
    """The page's cursor, checked, and the values of the parameters of `page_statement`: the
    position the cursor holds, and the limit (one row more than the page)."""
    check_slice(window)
    limit: dict[str, object] = {"page_limit": window.size + 1}
    cursor = window.before if window.backward else window.after
    if cursor is None:
        return None, limit
    position = cursors.decode(cursor, binding)
    if len(position) != len(sort_columns):
        raise bad_input("Invalid cursor.")
    return cursor, {**limit, **{f"cursor_{i}": value for i, value in enumerate(_typed(position, sort_columns))}}


def page_statement(
    statement: Select[Any], sort_columns: tuple[Any, ...], from_cursor: bool, backward: bool
) -> Select[Any]:
    """`statement` ordered for the page and limited to one row more than it, past the cursor's
    position when there is one (named parameters `page_limit`, `cursor_0`...: see `cursor_position`)."""
    if from_cursor:
        key = tuple_(*sort_columns)
        position = tuple_(*(bindparam(f"cursor_{i}", type_=c.type) for i, c in enumerate(sort_columns)))
        statement = statement.where(key < position if backward else key > position)
    order = [column.desc() for column in sort_columns] if backward else list(sort_columns)
    return statement.order_by(*order).limit(bindparam("page_limit", type_=Integer))


def page_of(
    uow: UnitOfWork, cursors: CursorCodec, query: PagedQuery, rows: Sequence[Row], immutable: bool = False
) -> Page[Row]:
    """The page of `rows`, as `query.statement` read them. `hasPreviousPage` going forward
    (`hasNextPage` going backward) is true when a cursor was given: the page starts after an item
    (Relay lets a server say so). `immutable`: rows that cannot change (tuples, not ORM objects) are
    read for their cursors only when one is asked for."""
    window, binding, position_of = query.window, query.binding, query.position_of
    size = window.size
    more = len(rows) > size
    page_rows = list(rows[:size])[::-1] if window.backward else list(rows[:size])
    seal = cursors.encoder(binding)
    if immutable:
        sealers = [partial(_sealed, seal, position_of, row) for row in page_rows]
    else:
        sealers = [partial(seal, position_of(row)) for row in page_rows]  # read now, sealed when asked
    start = seal(position_of(page_rows[0])) if page_rows else None
    end = seal(position_of(page_rows[-1])) if page_rows else None
    counted, parameters = query.counted, query.parameters

    async def count() -> int:
        statement = select(func.count()).select_from(counted.subquery())
        return int((await uow.execute(statement, parameters)).scalar_one())

    return Page(
        page_rows,
        has_next_page=query.cursor is not None if window.backward else more,
        end_cursor=end,
        cursors=sealers,
        has_previous_page=more if window.backward else query.cursor is not None,
        start_cursor=start,
        count=count,
    )


def _sealed(seal: Callable[[Sequence[object]], str], position_of: Callable[[Any], Sequence[object]], row: Any) -> str:
    return seal(position_of(row))


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
    return page_of(uow, cursors, query, list((await uow.execute(query.statement, query.parameters)).scalars()))


def _typed(position: list[object], columns: Sequence[Any]) -> list[Any]:
    """The cursor's position as the sort columns' values (the parameters apply the columns' own
    conversion, UTC storage on SQLite)."""
    values = []
    for value, column in zip(position, columns, strict=True):
        if not isinstance(value, str):
            raise bad_input("Invalid cursor.")
        try:
            values.append(datetime.fromisoformat(value) if isinstance(column.type, UTCDateTime) else value)
        except ValueError:
            raise bad_input("Invalid cursor.") from None
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


async def find_nodes(uow: UnitOfWork, public_ids: Collection[str]) -> dict[str, tuple[str, Any]]:
    """The visible rows of these ids, each with its kind, by id: one statement per kind, not one per
    id (100 ids were 100 statements, an outside review's cheapest way to make the server work: helper
    53). Missing, hidden and malformed ids are absent alike."""
    wanted: dict[str, set[str]] = {}
    for public_id in public_ids:
        kind = kind_of(public_id)
        if kind in NODE_MODELS:
            wanted.setdefault(kind, set()).add(public_id)
    found: dict[str, tuple[str, Any]] = {}
    for kind, of_kind in wanted.items():
        model = NODE_MODELS[kind]
        rows = (await uow.execute(uow.authorized(model).where(model.public_id.in_(of_kind)))).scalars()
        found |= {row.public_id: (kind, row) for row in rows}
    return found


def visible_practice(uow: UnitOfWork, public_id: str) -> ScalarSelect[int]:
    """The id of the practice, if the partner may see it, as a subquery: the page's own query
    checks the practice, one statement less on every page that has rows."""
    _check_practice_id(public_id)
    return _visible_practice_id(uow.authorized, public_id)


def _check_practice_id(public_id: str) -> None:
    if kind_of(public_id) != "Practice":
        raise bad_input("`practiceId` is not a practice id.", argument="practiceId")


def _visible_practice_id(authorized: Authorized, public_id: object) -> ScalarSelect[int]:
    return authorized(Practice).where(Practice.public_id == public_id).with_only_columns(Practice.id).scalar_subquery()


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


@dataclass(frozen=True)
class AppointmentsShape:
    """What the SQL of an appointments page depends on, beside the partner's row filters: which
    filters and which paging the request uses. Their values are the statement's parameters."""

    practitioner: bool
    statuses: bool
    updated_since: bool
    from_cursor: bool
    backward: bool


@dataclass(frozen=True)
class CheckedAppointments:
    """An appointments page asked for, checked: the shape of its statement (`appointments_statements`)
    and this request's values of the statement's parameters."""

    shape: AppointmentsShape
    parameters: dict[str, object]
    cursor: str | None
    binding: tuple[object, ...]


# The page's order: by start, then id (unique). A row's position in it is what its cursor holds.
_APPOINTMENT_ORDER = (Appointment.starts_at, Appointment.public_id)


def appointment_position(appointment: Any) -> list[str]:
    return [appointment.starts_at.isoformat(), appointment.public_id]


async def check_appointments(
    uow: UnitOfWork, cursors: CursorCodec, asked: AppointmentsAsked, window: Slice
) -> CheckedAppointments:
    """The arguments checked, in the order their errors are told, and the practitioner found."""
    practice_public_id, start, end = asked.practice_id, asked.start, asked.end
    practitioner_public_id, statuses, updated_since = asked.practitioner_id, asked.statuses, asked.updated_since
    if start.tzinfo is None or end.tzinfo is None:
        raise bad_input("`from` and `to` need a time zone offset, e.g. 2026-12-01T08:00:00+01:00.")
    if not start < end:
        raise bad_input("`from` must be before `to`.")
    if (end - start).total_seconds() > MAX_WINDOW_DAYS * 86400:
        raise bad_input(f"The window from `from` to `to` is at most {MAX_WINDOW_DAYS} days.")
    _check_practice_id(practice_public_id)
    parameters: dict[str, object] = {"page_practice": practice_public_id, "page_from": start, "page_to": end}
    if practitioner_public_id is not None:
        if kind_of(practitioner_public_id) != "Practitioner":
            raise bad_input("`practitionerId` is not a practitioner id.", argument="practitionerId")
        membership = await find_by_public_id(uow, PracticeMembership, practitioner_public_id)
        parameters["page_practitioner"] = membership.practitioner_id
    if statuses is not None:
        if not statuses:
            raise bad_input("`statuses` holds at least one status.", argument="statuses")
        parameters["page_statuses"] = sorted(set(statuses))
    if updated_since is not None:
        if updated_since.tzinfo is None:
            raise bad_input("`updatedSince` needs a time zone offset.", argument="updatedSince")
        parameters["page_updated_since"] = updated_since
    binding: tuple[object, ...] = (
        "appointments",
        uow.principal.partner_id,
        practice_public_id,
        start.isoformat(),
        end.isoformat(),
        practitioner_public_id,
        parameters.get("page_statuses"),
    )
    if updated_since is not None:  # appended only when given: cursors issued without it stay valid
        binding += (updated_since.astimezone(UTC).isoformat(),)
    cursor, position = cursor_position(cursors, window, binding, _APPOINTMENT_ORDER)
    shape = AppointmentsShape(
        practitioner_public_id is not None, statuses is not None, updated_since is not None,
        cursor is not None, window.backward,
    )
    return CheckedAppointments(shape, {**parameters, **position}, cursor, binding)


def appointments_statements(authorized: Authorized, shape: AppointmentsShape) -> tuple[Select[Any], Select[Any]]:
    """The page's statement and the whole list's (for `totalCount`), built from the shape alone:
    each value of the request is a named parameter (`check_appointments`), so that one statement
    serves every request of that shape."""
    statement = authorized(Appointment).where(
        Appointment.practice_id
        == _visible_practice_id(authorized, bindparam("page_practice", type_=Practice.public_id.type)),
        Appointment.starts_at >= bindparam("page_from", type_=Appointment.starts_at.type),
        Appointment.starts_at < bindparam("page_to", type_=Appointment.starts_at.type),
    )
    if shape.practitioner:
        statement = statement.where(
            Appointment.practitioner_id == bindparam("page_practitioner", type_=Appointment.practitioner_id.type)
        )
    if shape.statuses:
        statement = statement.where(
            Appointment.status.in_(bindparam("page_statuses", expanding=True, type_=Appointment.status.type))
        )
    if shape.updated_since:
        statement = statement.where(
            Appointment.updated_at >= bindparam("page_updated_since", type_=Appointment.updated_at.type)
        )
    paged_statement = page_statement(statement, _APPOINTMENT_ORDER, shape.from_cursor, shape.backward)
    return paged_statement, statement


async def appointments_query(
    uow: UnitOfWork, cursors: CursorCodec, asked: AppointmentsAsked, window: Slice
) -> PagedQuery:
    """A page of the appointments `asked` for: the window bounds every page. Its rows are
    appointments, or rows holding their columns under their names (api/compiled/)."""
    checked = await check_appointments(uow, cursors, asked, window)
    statement, counted = appointments_statements(uow.authorized, checked.shape)
    return PagedQuery(
        statement, counted, window, checked.cursor, checked.binding, appointment_position, checked.parameters
    )


async def appointments(
    uow: UnitOfWork, cursors: CursorCodec, asked: AppointmentsAsked, window: Slice
) -> Page[Appointment]:
    """The page of `appointments_query`, NOT_FOUND when empty because the practice is hidden."""
    query = await appointments_query(uow, cursors, asked, window)
    page = page_of(uow, cursors, query, list((await uow.execute(query.statement, query.parameters)).scalars()))
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
    uow: UnitOfWork, extraction: ExtractionGuard, horizons: Horizons, ids: Collection[int]
) -> tuple[dict[int, LoadedPatient], set[int]]:
    """The visible patients among `ids`, whether each is inside the reading horizon, and which of
    them the distinct-patient budget must admit (one query: the others need no write)."""
    exempt = exempt_patients(uow.principal.partner_id)
    inside = patient_inside(horizons.groups(), uow.principal.partner_id)
    statement = uow.authorized(Patient).where(Patient.id.in_(set(ids))).add_columns(exempt, inside)
    parameters = {**extraction.exempt_parameters(uow.request_time), **horizons.parameters()}
    rows = (await uow.execute(statement, parameters)).all()
    return (
        {patient.id: LoadedPatient(patient, bool(in_horizon)) for patient, _, in_horizon in rows},
        {patient.id for patient, free, _ in rows if not free},
    )


async def concerned(uow: UnitOfWork, extraction: ExtractionGuard, ids: Collection[int]) -> dict[int, tuple[int, bool]]:
    """Patient -> their practice, and whether the budget exempts them: for patients whose health data
    (an appointment's reason) is shown, whether or not the policy lets the partner see their record."""
    statement = select(Patient.id, Patient.practice_id, exempt_patients(uow.principal.partner_id)).where(
        Patient.id.in_(set(ids))
    )
    rows = await uow.rows(statement, extraction.exempt_parameters(uow.request_time))
    return {patient_id: (practice_id, bool(free)) for patient_id, practice_id, free in rows}


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
    seal = cursors.encoder(binding)
    sealers = [partial(seal, [change.seq]) for change in page_rows]
    # With nothing new, the end cursor stays where the client is, ready for the next poll.
    end = seal([page_rows[-1].seq if page_rows else position])

    async def count() -> int:
        total = 0
        for listed in (updated, deleted):
            total += int((await uow.execute(select(func.count()).select_from(listed.subquery()))).scalar_one())
        return total

    return Page(
        page_rows,
        has_next_page=len(rows) > first,
        end_cursor=end,
        cursors=sealers,
        has_previous_page=since is not None,
        start_cursor=seal([page_rows[0].seq]) if page_rows else None,
        count=count,
    )
