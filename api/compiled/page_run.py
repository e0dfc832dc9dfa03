"""An appointments page read in one SQL statement and projected straight to the response's data.

The statement is the services' own (api/services/reads.py `appointments_statements`: the policy's
row filter on appointments, the practice check, the window, the filters and the keyset paging), with
the selected patient, practitioner and practice LEFT JOINed under their own row filters, and each
patient's two flags the patient loader reads (inside the reading horizon; exempt from the
distinct-patient budget). It is built once per partner and shape of request and selection, every
value of the request a named parameter (`_statements`). No ORM object and no schema object is
built: each row is projected into the response's dictionaries with the fields the policy lets the
partner read at the practice, on the record's side of the reading horizon
(api/services/readable_fields.py), as the schema's types would be (api/schema/appointments.py, guard.py):
- a field the grant does not allow is null, with its FORBIDDEN error at its path;
- a patient, practitioner or practice the partner may not see is null with NOT_FOUND;
- the page's new patients (of the patient field, or of the reason: their health data) pass the
  distinct-patient budget, one admission per practice, as the patient loader does
  (api/schema/loaders.py): a refused practice's first patient or reason carries the refusal, the
  others are null;
- every record built and every value sent is recorded for the ledger (api/ledger/disclosure_recorder.py).

Whatever this module does not reproduce exactly, it hands back (`Declined`) before any side
effect (budget windows, alerts, ledger): arguments the resolver would refuse, an empty page (the
practice may be hidden), a non-null field the grant forbids (its null would propagate), a row
filter that is not a condition on its own table. The resolvers then read the page (api/compiled/runner.py).
tests/compiled/test_differential.py holds both to the same data, errors, costs and ledger rows.
"""

from __future__ import annotations

import weakref
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache, partial
from typing import Any, cast

from graphql import FieldNode, GraphQLError, located_error
from graphql.execution.values import VariableValues, get_argument_values
from sqlalchemy import ColumnElement, Select, Table, and_, true
from sqlalchemy.engine import Row
from strawberry.schema.name_converter import NameConverter
from strawberry.types.field import StrawberryField

from api.compiled.page_plan import Leaf, Nested, PagePlan, Shape
from api.compiled.projector import Projector, projector
from api.data.models import Appointment, Patient, Practice, PracticeMembership, Practitioner
from api.errors import ApiError, ErrorCode, FieldForbidden, not_found
from api.ledger.disclosure_recorder import DisclosedRecord
from api.protection.extraction import exempt
from api.protection.input_validation import check_strings
from api.schema.context import GraphQLContext
from api.services import reads
from api.services.horizon import HorizonGroups, RecordFields, patient_inside
from authz.engine import Authorizer

__all__ = ["Declined", "read_page"]

Path = list[str | int]


class Declined(Exception):
    """The page is read through the resolvers: nothing was recorded, charged or admitted here."""


async def read_page(
    plan: PagePlan, context: GraphQLContext, variables: VariableValues
) -> tuple[dict[str, Any], list[GraphQLError]]:
    """The page's data and errors, as the resolvers would give them (errors in any order: the view
    puts every response's errors in response order)."""
    root = plan.root
    assert root.definition is not None
    arguments = get_argument_values(root.definition, root.node, variables, None, True)
    _check_strings(root.definition.extensions["strawberry-definition"], arguments)
    uow = context.uow
    window = _window(arguments)
    checked = await _checked(context, arguments, window)
    patient, practitioner, practice = plan.object("patient"), plan.object("practitioner"), plan.object("practice")
    # The patient is joined when selected, and for the reason (theirs: the budget admits them for it).
    joined = patient is not None or plan.reads_reason
    horizons = await context.fields.horizons() if joined else None
    statement, counted = _statements(
        weakref.ref(uow.authorizer),
        uow.principal.partner_id,
        checked.shape,
        _columns(Appointment, "", plan.node),
        _columns(Patient, "patient__", patient) if joined else None,
        horizons.groups() if horizons is not None else None,
        _columns(Practitioner, "practitioner__", practitioner) if practitioner is not None else None,
        _columns(Practice, "practice__", practice) if practice is not None else None,
    )
    parameters = checked.parameters
    if horizons is not None:
        parameters = {**parameters, **horizons.parameters(), **context.extraction.exempt_parameters(uow.request_time)}
    result = await uow.rows(statement, parameters)
    rows = result.all()
    if not rows:
        raise Declined  # an empty page, or a hidden practice's NOT_FOUND: the resolvers tell them apart
    query = reads.PagedQuery(
        statement, counted, window, checked.cursor, checked.binding, reads.appointment_position, parameters
    )
    page = reads.page_of(uow, context.cursors, query, rows, immutable=True)
    practices = {r.practice_id for r in page.rows}
    if joined:  # a patient's own practice decides what is read of them (theirs, normally)
        practices |= {r.patient__practice_id for r in page.rows if r.patient__id is not None}
    projection = _Projection(plan, context, await context.fields.record_fields(practices))
    projection.layout = tuple(result.keys())
    await projection.prepare(page.rows)
    data = {plan.root_key: await projection.connection(page, [plan.root_key])}
    return data, projection.errors


@lru_cache(maxsize=1024)
def _statements(
    policy: weakref.ref[Authorizer],
    partner_id: int,
    shape: reads.AppointmentsShape,
    appointment: Columns,
    patient: Columns | None,
    horizons: HorizonGroups | None,
    practitioner: Columns | None,
    practice: Columns | None,
) -> tuple[Select[Any], Select[Any]]:
    """The page's statement, and the whole list's, for one partner's filters and one shape of request
    and of selection. Built from these alone, every request value a named parameter, so that one
    statement serves every request alike: no SQL is built, and SQLAlchemy computes no cache key
    (it keeps it on the statement). The authorizer is the policy release's: a new release builds anew,
    and the cache holds no release alive (a weak reference; a dead release's entries are never hit
    again, and leave as the cache turns over)."""
    authorizer = policy()
    assert authorizer is not None  # the request holds its release
    authorized = partial(authorizer.filter, partner_id, "read")
    statement, counted = reads.appointments_statements(authorized, shape)
    columns: list[ColumnElement[Any]] = [*appointment]
    if patient is not None:
        assert horizons is not None
        statement = statement.outerjoin(Patient, and_(Patient.id == Appointment.patient_id, _rule(authorized, Patient)))
        columns += [
            *patient,
            exempt(partner_id).label("patient__exempt"),
            patient_inside(horizons, partner_id).label("patient__inside"),
        ]
    if practitioner is not None:
        at_practice = and_(
            PracticeMembership.practice_id == Appointment.practice_id,
            PracticeMembership.practitioner_id == Appointment.practitioner_id,
            _rule(authorized, PracticeMembership),
        )
        statement = statement.outerjoin(PracticeMembership, at_practice).outerjoin(
            Practitioner, Practitioner.id == PracticeMembership.practitioner_id
        )
        columns += practitioner
    if practice is not None:
        statement = statement.outerjoin(
            Practice, and_(Practice.id == Appointment.practice_id, _rule(authorized, Practice))
        )
        columns += practice
    return statement.with_only_columns(*columns), counted


def _check_strings(field: StrawberryField, arguments: dict[str, Any]) -> None:
    """The `@constraint` of each string argument, as the field's ValidatedInput checks it."""
    names = NameConverter()
    try:
        check_strings(field, {a.python_name: arguments.get(names.from_argument(a)) for a in field.arguments}, names)
    except ApiError:
        raise Declined from None


def _window(arguments: dict[str, Any]) -> reads.Slice:
    return reads.Slice(arguments.get("first"), arguments.get("after"), arguments.get("last"), arguments.get("before"))


async def _checked(
    context: GraphQLContext, arguments: dict[str, Any], window: reads.Slice
) -> reads.CheckedAppointments:
    """The services' checks of the page's arguments, with the resolver's own (api/schema/query.py
    `appointments`)."""
    status, statuses = arguments.get("status"), arguments.get("statuses")
    if status is not None and statuses is not None:
        raise Declined
    chosen = [status] if status is not None else statuses
    if chosen is not None and len(chosen) > len(set(chosen)):
        raise Declined
    try:
        asked = reads.AppointmentsAsked(
            arguments["practiceId"],
            arguments["from"],
            arguments["to"],
            arguments.get("practitionerId"),
            chosen,
            arguments.get("updatedSince"),
        )
        return await reads.check_appointments(context.uow, context.cursors, asked, window)
    except ApiError:
        raise Declined from None


def _rule(authorized: reads.Authorized, model: type[Any]) -> ColumnElement[bool]:
    """The policy's row filter of `model`, as a condition on its own table (to join it)."""
    rule = _condition(authorized(model), model.__table__)
    if rule is None:
        raise Declined  # a filter joining other tables: the loaders apply it as a query of its own
    return rule


@lru_cache(maxsize=1024)
def _condition(statement: Select[Any], table: Any) -> ColumnElement[bool] | None:
    """The condition of a filter reading `table` alone, or None (cached: the authorizer keeps each
    partner's filter, and reading its FROM list compiles it)."""
    if statement.get_final_froms() != [table]:
        return None
    return statement.whereclause if statement.whereclause is not None else true()


# The columns every row needs, whatever is selected: the appointment's to page, place it on its side of
# the reading horizon and find the others; each object's to tell it was found (its id) and record it.
_ALWAYS = {
    Appointment: ("id", "public_id", "practice_id", "patient_id", "starts_at", "source_partner_id",
                  "time_set_by_partner_id"),
    Patient: ("id", "practice_id"),
    Practitioner: (),  # the membership's public id, below
    Practice: ("public_id",),
}


def _columns(model: type[Any], prefix: str, shape: Shape | None) -> tuple[ColumnElement[Any], ...]:
    """The columns of `model` the page reads, labelled with `prefix`."""
    wanted = dict.fromkeys(_ALWAYS[model])
    for field in shape.fields if shape else ():
        if isinstance(field, Leaf) and not field.is_typename:
            wanted[_COLUMN_OF.get(field.attribute, field.attribute)] = None
    return _labelled(model.__table__, prefix, tuple(wanted))


_COLUMN_OF = {"id": "public_id", "source": "source_partner_id"}  # a field's column, where it has another name


Columns = tuple[ColumnElement[Any], ...]


@lru_cache(maxsize=256)
def _labelled(table: Table, prefix: str, names: tuple[str, ...]) -> tuple[ColumnElement[Any], ...]:
    if table is Practitioner.__table__:  # its id is the membership's: it names the practitioner at this practice
        return (
            PracticeMembership.public_id.label("practitioner__public_id"),
            *(table.c[name].label(prefix + name) for name in names if name != "public_id"),
        )
    return tuple(table.c[name] if not prefix else table.c[name].label(prefix + name) for name in names)


class _Projection:
    """One page's rows into the response, and its errors."""

    def __init__(self, plan: PagePlan, context: GraphQLContext, fields: dict[int, RecordFields]) -> None:
        self.plan, self.context, self.fields = plan, context, fields
        self.partner_id = context.principal.partner_id
        self.errors: list[GraphQLError] = []
        self.refused: dict[int, Exception] = {}  # practice -> its distinct-patient refusal (or failure)
        self.refusal_told: set[int] = set()  # the refusals raised (a quarantine's is every practice's)
        self.others: dict[tuple[str, int], frozenset[str]] = {}  # practitioner's and practice's fields, by practice
        self.projectors: dict[tuple[int, frozenset[str]], Projector] = {}  # by shape and readable fields
        self.groups: dict[tuple[int, int], tuple[int, ...]] = {}  # a projector's, by side (`_groups`)
        self.layout: tuple[str, ...] = ()  # the row's columns
        self.checked: set[tuple[int, frozenset[str]]] = set()  # shapes and field sets `decline_null` passed
        self.sides: list[bool] = []  # each row's side of the reading horizon (`prepare`)
        self.disclosed: list[DisclosedRecord] = []  # each row's record in the ledger
        self.hidden: set[int] = set()  # patients the policy hides whose reason the page shows (`prepare`)

    async def prepare(self, rows: Sequence[Row[Any]]) -> None:
        """Before anything is recorded: declines what would propagate a null, then admits the page's
        new patients, practice by practice, as the patient loader does."""
        plan, node = self.plan, self.plan.node
        patient, others = plan.object("patient"), {n: plan.object(n) for n in ("practitioner", "practice")}
        loaded: dict[int, set[int]] = defaultdict(set)  # practice -> new patients
        hidden: set[int] = set()  # patients whose reason is shown, their record hidden by the policy
        self.sides = [self.fields[row.practice_id].holds(row, self.partner_id) for row in rows]  # type: ignore[arg-type]  # a row with its columns
        for row, side in zip(rows, self.sides, strict=True):
            readable = self.fields[row.practice_id].side(side)
            if node is not None:
                self.decline_null(node, readable)
            shows_patient = patient is not None and "Appointment.patient" in readable
            if shows_patient and row.patient__id is not None:
                self.decline_null(patient, self._patient_readable(row))  # type: ignore[arg-type]  # shows_patient: not None
            # the patient is read for their record, and for their appointment's reason (health data)
            shows_reason = plan.reads_reason and "Appointment.reason" in readable and row.reason is not None
            if (shows_patient or shows_reason) and row.patient__id is not None and not row.patient__exempt:
                loaded[row.patient__practice_id].add(row.patient__id)
            elif shows_reason and row.patient__id is None and row.patient_id is not None:
                hidden.add(row.patient_id)
            for name, shape in others.items():
                if shape is not None:
                    self.decline_null(shape, await self._readable_at(name, row.practice_id))
        uow = self.context.uow
        self.hidden = hidden
        if hidden:  # as the reason's resolver: counted all the same (api/schema/appointments.py `_reason`)
            concerned = await reads.concerned(uow, self.context.extraction, hidden)
            for patient_id, (practice_id, free) in concerned.items():
                if not free:
                    loaded[practice_id].add(patient_id)
        for practice_id, new in loaded.items():
            if uow.halted is not None:  # quarantined by an earlier refusal of this request
                self.refused[practice_id] = uow.halted
                continue
            try:
                async with uow.transaction() as session:
                    await self.context.extraction.admit(
                        session, uow.principal.partner_id, uow.principal.key_id, practice_id, new, uow.request_time,
                        uow.commit, uow.keep,
                    )
            except ApiError as error:
                self.refused[practice_id] = error
                if error.extensions.get("quarantined"):
                    uow.halted = error
            except Exception as failure:  # the loader's batch fails: each of its patients carries the failure
                self.refused[practice_id] = failure

    def _patient_readable(self, row: Row[Any]) -> frozenset[str]:
        return self.fields[row.patient__practice_id].side(bool(row.patient__inside))

    async def _readable_at(self, name: str, practice_id: int) -> frozenset[str]:
        readable = self.others.get((name, practice_id))
        if readable is None:
            readable = self.others[(name, practice_id)] = await self.context.fields.at(practice_id)
        return readable

    async def connection(self, page: reads.Page[Row[Any]], path: Path) -> dict[str, Any]:
        # Every appointment of the page is a record of the response, selected or not, as the
        # resolvers build one per row (api/schema/relay.py `Connection.of`).
        self.disclosed = [
            self.context.disclosures.appointment(row, side)  # type: ignore[arg-type]  # a row with its columns
            for row, side in zip(page.rows, self.sides, strict=True)
        ]
        result: dict[str, Any] = {}
        for field in self.plan.connection.fields:
            if isinstance(field, Nested):
                if field.name == "edges":
                    result[field.key] = [
                        self.edge(field.shape, index, row, page.cursors[index], [*path, field.key, index])
                        for index, row in enumerate(page.rows)
                    ]
                else:  # pageInfo
                    result[field.key] = {
                        leaf.key: leaf.typename if leaf.is_typename else getattr(page, leaf.attribute)
                        for leaf in field.shape.fields
                        if isinstance(leaf, Leaf)
                    }
            elif field.is_typename:
                result[field.key] = field.typename
            else:  # totalCount
                assert page.count is not None
                result[field.key] = await page.count()
        return result

    def edge(self, shape: Shape, index: int, row: Row[Any], cursor: Callable[[], str], path: Path) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for field in shape.fields:
            if isinstance(field, Nested):  # node
                result[field.key] = self.appointment(field.shape, index, row, [*path, field.key])
            else:
                result[field.key] = field.typename if field.is_typename else cursor()
        return result

    def appointment(self, shape: Shape, index: int, row: Row[Any], path: Path) -> dict[str, Any]:
        fields, side = self.fields[row.practice_id], self.sides[index]
        readable, closed = fields.side(side), fields.closed(side)
        result = self.values(shape, row, readable, self.disclosed[index], path, closed)
        for field in shape.beside_leaves:  # in document order: the first field a refusal withholds tells it
            if isinstance(field, Leaf):  # the reason
                if field.qualified in readable and row.reason is not None:
                    self._withheld(row, field.node, [*path, field.key])  # its value is None then (projector.py)
                continue
            at = [*path, field.key]
            if field.qualified not in readable:
                result[field.key] = None
                forbidden = FieldForbidden(field.qualified, field.qualified in closed)
                self.errors.append(located_error(forbidden, [field.node], at))
            elif field.name == "patient":
                result[field.key] = self.patient(field, row, at)
            else:  # practitioner, practice
                found = getattr(row, f"{field.name}__public_id") is not None
                if not found:
                    result[field.key] = None
                    self.errors.append(located_error(not_found(field.name), [field.node], at))
                else:
                    readable_here = self.others[(field.name, row.practice_id)]
                    result[field.key] = self.values(field.shape, row, readable_here, None, at)
        return result

    def patient(self, field: Nested, row: Row[Any], path: Path) -> dict[str, Any] | None:
        if row.patient__id is None:
            # a hidden patient whose reason the page shows carries their practice's refusal, as the loader gives it
            if row.patient_id in self.hidden and self._withheld(row, field.node, path):
                return None
            self.errors.append(located_error(not_found("patient"), [field.node], path))
            return None
        if self._withheld(row, field.node, path):
            return None
        inside, fields = bool(row.patient__inside), self.fields[row.patient__practice_id]
        disclosed = self.context.disclosures.patient_record(row.patient__id, row.patient__practice_id, inside)
        return self.values(field.shape, row, fields.side(inside), disclosed, path, fields.closed(inside))

    def _withheld(self, row: Row[Any], node: FieldNode, path: Path) -> bool:
        """Whether the row's patient is refused (their practice's refusal, or a failure), as the patient
        loader raises it to each field awaiting them (api/schema/loaders.py `Loaders.patient`)."""
        refusal = None if row.patient_id is None else self.refused.get(row.practice_id)  # the patient's practice
        if refusal is None:
            return False
        if isinstance(refusal, ApiError) and refusal.extensions.get("code") == ErrorCode.EXTRACTION_LIMIT_EXCEEDED:
            if id(refusal) in self.refusal_told:
                return True  # one refusal per practice: the others are null without repeating it
            self.refusal_told.add(id(refusal))
        self.errors.append(located_error(refusal, [node], path))
        return True

    def values(
        self,
        shape: Shape,
        row: Row[Any],
        readable: frozenset[str],
        disclosed: DisclosedRecord | None,
        path: Path,
        closed: frozenset[str] = frozenset(),
    ) -> dict[str, Any]:
        """The object's leaves: forbidden ones null with their error (saying so when the horizon
        withholds them, `closed`); each value sent recorded in `disclosed`. Its object fields are
        left null, for the caller to fill."""
        projector = self._projector(shape, readable)
        field_groups = disclosed.field_groups if disclosed is not None else None
        result, carried = projector.project(row, self.partner_id, self.refused, self._groups(projector, field_groups))
        if disclosed is not None:
            disclosed.carried_groups(carried)
        for position in projector.forbidden:
            leaf = cast(Leaf, shape.fields[position])
            refusal = FieldForbidden(leaf.qualified, leaf.qualified in closed)
            self.errors.append(located_error(refusal, [leaf.node], [*path, leaf.key]))
        return result

    def _projector(self, shape: Shape, readable: frozenset[str]) -> Projector:
        key = (id(shape), readable)
        found = self.projectors.get(key)
        if found is None:
            found = self.projectors[key] = projector(shape, readable, self.layout)
        return found

    def _groups(self, projector: Projector, field_groups: Mapping[str, int] | None) -> tuple[int, ...]:
        """The ledger groups of each leaf the projector may carry, for the side a record was built on
        (none for objects the ledger does not record)."""
        key = (id(projector), id(field_groups))
        groups = self.groups.get(key)
        if groups is None:
            groups = self.groups[key] = tuple(
                field_groups.get(qualified, 0) if field_groups is not None else 0 for qualified in projector.carried
            )
        return groups

    def decline_null(self, shape: Shape, readable: frozenset[str]) -> None:
        """A non-null field the grant forbids would null its parent, and graphql-core drops errors
        below a nulled parent: left to the resolvers, which do exactly that."""
        if (id(shape), readable) in self.checked:
            return
        for field in shape.fields:
            if isinstance(field, Leaf) and field.non_null and not field.is_typename and field.qualified not in readable:
                raise Declined
        self.checked.add((id(shape), readable))

