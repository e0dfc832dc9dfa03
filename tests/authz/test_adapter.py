"""SqlAlchemyFilterAdapter: oso's data filters become exact SQL, on SQLite and PostgreSQL.

Three layers: hand-built `DataFilter`s (each operator, nil on either side, mirrored sides,
relations, bind parameters, records as values, refusals); small policies compiled by oso and
compared with oso's own in-memory answer; and a property test of the real policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oso import Oso
from polar.data.filter import Condition, DataFilter, Projection
from polar.data.filter import Relation as FilterRelation
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from api.data.models import (
    Appointment,
    AppointmentStatus,
    Gender,
    Grant,
    Partner,
    Patient,
    Practice,
    PracticeMembership,
    Practitioner,
)
from api.scopes import Scope
from authz.actors import REQUEST_TIME, PartnerActor
from authz.adapter import SqlAlchemyFilterAdapter, SqlParameter, UntranslatableFilter
from authz.engine import POLAR_CLASSES, Authorizer, build_oso

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
TYPES = {cls: SimpleNamespace(fields=fields) for cls, fields in POLAR_CLASSES.values()}


@dataclass
class Data:
    """Two partners, three practices (C without any grant), appointments with every kind of
    `source_partner_id` (none, either partner) and status."""

    partners: list[Partner]
    practices: list[Practice]
    appointments: list[Appointment]
    grants: list[Grant]
    memberships: list[PracticeMembership]


@pytest.fixture
def session(sync_engine: Engine):
    with Session(sync_engine) as session:
        yield session
        session.rollback()


@pytest.fixture
def data(session: Session) -> Data:
    partners = [Partner(name="p1"), Partner(name="p2")]
    practices = [Practice(name=name, address=f"1 rue {name}") for name in "ABC"]
    doctors = [Practitioner(first_name="C", last_name="M", specialty="g", rpps=f"1000000000{i}") for i in range(2)]
    session.add_all([*partners, *practices, *doctors])
    session.flush()
    memberships = [
        PracticeMembership(practice_id=practices[0].id, practitioner_id=doctors[0].id),
        PracticeMembership(practice_id=practices[0].id, practitioner_id=doctors[1].id),
        PracticeMembership(practice_id=practices[1].id, practitioner_id=doctors[0].id),
    ]
    patients = [
        Patient(practice_id=p.id, first_name="J", last_name="D", gender=Gender.FEMALE) for p in practices
    ]
    session.add_all([*memberships, *patients])
    session.flush()
    appointments = []
    sources = [None, partners[0].id, partners[1].id]
    statuses = [AppointmentStatus.BOOKED, AppointmentStatus.CANCELLED, AppointmentStatus.FULFILLED]
    for i, (practice, patient) in enumerate(zip(practices, patients, strict=True)):
        for j in range(3):
            starts = NOW + timedelta(days=1, hours=j)
            appointments.append(
                Appointment(
                    practice_id=practice.id, practitioner_id=doctors[0].id, patient_id=patient.id,
                    starts_at=starts, ends_at=starts + timedelta(minutes=20), status=statuses[j],
                    source_partner_id=sources[(i + j) % 3], change_seq=10 * i + j,
                )
            )
    # Practice A: p1 holds a live grant and p2 an expired one; practice B: p2 holds a live grant.
    grants = [
        _grant(partners[0], practices[0], {Scope.APPOINTMENTS_READ}, NOW + timedelta(days=1)),
        _grant(partners[1], practices[0], {Scope.APPOINTMENTS_READ, Scope.APPOINTMENTS_WRITE}, NOW - timedelta(days=1)),
        _grant(partners[1], practices[1], {Scope.APPOINTMENTS_WRITE}, NOW + timedelta(days=1)),
    ]
    session.add_all([*appointments, *grants])
    session.flush()
    return Data(partners, practices, appointments, grants, memberships)


def _grant(
    partner: Partner, practice: Practice, scopes: set[Scope], expires_at: datetime, revoked: bool = False
) -> Grant:
    grant = Grant(
        partner_id=partner.id,
        practice_id=practice.id,
        granted_at=NOW - timedelta(days=30),
        expires_at=expires_at,
        revoked_at=NOW - timedelta(hours=1) if revoked else None,
    )
    grant.set_scopes(scopes)
    return grant


def _filter(model: type, *conjunctions: list[Condition], relations: list[FilterRelation] = ()) -> DataFilter:
    return DataFilter(model=model, relations=list(relations), conditions=list(conjunctions), types=TYPES)


def _ids(session: Session, filter: DataFilter, request_time: datetime = NOW) -> set[int]:
    statement = SqlAlchemyFilterAdapter().build_query(filter)
    return {row.id for row in session.scalars(statement, {"request_time": request_time})}


def _where(rows: list[Appointment], keep) -> set[int]:  # type: ignore[no-untyped-def]
    return {row.id for row in rows if keep(row)}


SOURCE = Projection(Appointment, "source_partner_id")
CHANGE_SEQ = Projection(Appointment, "change_seq")


# ---------------------------------------------------------------------------
# Hand-built filters: each operator, with Polar's meaning of nil
# ---------------------------------------------------------------------------


def test_eq_value_and_eq_nil(session, data):
    p1 = data.partners[0].id
    apps = data.appointments
    assert _ids(session, _filter(Appointment, [Condition(SOURCE, "Eq", p1)])) == _where(
        apps, lambda a: a.source_partner_id == p1
    )
    assert _ids(session, _filter(Appointment, [Condition(SOURCE, "Eq", None)])) == _where(
        apps, lambda a: a.source_partner_id is None
    )


def test_neq_keeps_nil_rows_because_nil_differs_from_any_value(session, data):
    # Polar: `nil != 1` is true. SQL's `NULL <> 1` is unknown, so the adapter uses IS DISTINCT FROM.
    p1 = data.partners[0].id
    rows = _ids(session, _filter(Appointment, [Condition(SOURCE, "Neq", p1)]))
    assert rows == _where(data.appointments, lambda a: a.source_partner_id != p1)
    assert any(a.source_partner_id is None and a.id in rows for a in data.appointments)


def test_neq_nil_is_is_not_null(session, data):
    rows = _ids(session, _filter(Appointment, [Condition(SOURCE, "Neq", None)]))
    assert rows == _where(data.appointments, lambda a: a.source_partner_id is not None)


@pytest.mark.parametrize(
    ("op", "python"),
    [
        ("Lt", lambda a, b: a < b),
        ("Leq", lambda a, b: a <= b),
        ("Gt", lambda a, b: a > b),
        ("Geq", lambda a, b: a >= b),
    ],
)
def test_orderings_on_either_side(session, data, op, python):
    pivot = data.appointments[4].change_seq
    expected = _where(data.appointments, lambda a: python(a.change_seq, pivot))
    assert _ids(session, _filter(Appointment, [Condition(CHANGE_SEQ, op, pivot)])) == expected
    # The immediate on the left: `pivot > column` is `column < pivot`.
    mirrored = {"Lt": "Gt", "Leq": "Geq", "Gt": "Lt", "Geq": "Leq"}[op]
    assert _ids(session, _filter(Appointment, [Condition(pivot, mirrored, CHANGE_SEQ)])) == expected


def test_eq_and_neq_with_nil_on_the_left(session, data):
    assert _ids(session, _filter(Appointment, [Condition(None, "Eq", SOURCE)])) == _where(
        data.appointments, lambda a: a.source_partner_id is None
    )
    p2 = data.partners[1].id
    assert _ids(session, _filter(Appointment, [Condition(p2, "Neq", SOURCE)])) == _where(
        data.appointments, lambda a: a.source_partner_id != p2
    )


def test_in_and_nin_with_and_without_nil_in_the_list(session, data):
    p1, p2 = (p.id for p in data.partners)
    apps = data.appointments
    cases = {
        ("In", (p1,)): lambda a: a.source_partner_id == p1,
        ("In", (p1, None)): lambda a: a.source_partner_id in (p1, None),
        ("In", ()): lambda a: False,
        # Polar: `not nil in [1, 2]` holds; SQL's `NULL NOT IN (1, 2)` would drop the row.
        ("Nin", (p1,)): lambda a: a.source_partner_id != p1,
        ("Nin", (p1, None)): lambda a: a.source_partner_id not in (p1, None),
        ("Nin", ()): lambda a: True,
        ("Nin", (p1, p2)): lambda a: a.source_partner_id is None,
    }
    for (op, values), keep in cases.items():
        got = _ids(session, _filter(Appointment, [Condition(SOURCE, op, list(values))]))
        assert got == _where(apps, keep), (op, values)


def test_column_against_column(session, data):
    same = Condition(Projection(Appointment, "practitioner_id"), "Eq", Projection(Appointment, "practitioner_id"))
    assert _ids(session, _filter(Appointment, [same])) == _where(data.appointments, lambda a: True)
    differs = Condition(Projection(Appointment, "id"), "Neq", Projection(Appointment, "change_seq"))
    assert _ids(session, _filter(Appointment, [differs])) == _where(data.appointments, lambda a: a.id != a.change_seq)


def test_conjunctions_and_disjunctions(session, data):
    p1, p2 = (p.id for p in data.partners)
    either = _filter(Appointment, [Condition(SOURCE, "Eq", p1)], [Condition(SOURCE, "Eq", p2)])
    assert _ids(session, either) == _where(data.appointments, lambda a: a.source_partner_id in (p1, p2))
    both = _filter(Appointment, [Condition(SOURCE, "Eq", p1), Condition(CHANGE_SEQ, "Gt", 10)])
    assert _ids(session, both) == _where(data.appointments, lambda a: a.source_partner_id == p1 and a.change_seq > 10)
    assert _ids(session, _filter(Appointment)) == set()  # no alternative: nothing
    assert _ids(session, _filter(Appointment, [])) == _where(data.appointments, lambda a: True)  # an empty one: all


# ---------------------------------------------------------------------------
# Relations, bind parameters, records as values
# ---------------------------------------------------------------------------

GRANTS_OF_PRACTICE = FilterRelation(left=Practice, name="grants", right=Grant)


def test_a_relation_is_an_exists_and_never_duplicates_rows(session, data):
    # Practice A has two grants that both match (any grant with appointments:read).
    readable = Condition(Projection(Grant, "appointments_read"), "Eq", True)
    statement = SqlAlchemyFilterAdapter().build_query(_filter(Practice, [readable], relations=[GRANTS_OF_PRACTICE]))
    sql = str(statement)
    assert "EXISTS" in sql and "JOIN" not in sql and "DISTINCT" not in sql
    rows = session.scalars(statement).all()
    assert [p.id for p in rows] == [data.practices[0].id]


def test_the_relation_joins_on_its_declared_fields(session, data):
    p2 = Condition(Projection(Grant, "partner_id"), "Eq", data.partners[1].id)
    assert _ids(session, _filter(Practice, [p2], relations=[GRANTS_OF_PRACTICE])) == {
        data.practices[0].id,
        data.practices[1].id,
    }


def test_a_sql_parameter_is_bound_on_each_execution(session, data):
    live = Condition(Projection(Grant, "expires_at"), "Gt", SqlParameter("request_time"))
    statement = SqlAlchemyFilterAdapter().build_query(_filter(Practice, [live], relations=[GRANTS_OF_PRACTICE]))
    assert ":request_time" in str(statement)
    at = lambda when: {p.id for p in session.scalars(statement, {"request_time": when})}  # noqa: E731
    assert at(NOW) == {data.practices[0].id, data.practices[1].id}
    assert at(NOW - timedelta(days=2)) == {data.practices[0].id, data.practices[1].id}
    assert at(NOW + timedelta(days=2)) == set()
    # The parameter on the left is mirrored like any value.
    mirrored = Condition(SqlParameter("request_time"), "Lt", Projection(Grant, "expires_at"))
    assert (
        _ids(session, _filter(Practice, [mirrored], relations=[GRANTS_OF_PRACTICE]), NOW + timedelta(days=2)) == set()
    )


def test_a_record_is_compared_by_its_primary_key(session, data):
    one = data.appointments[2]
    itself = Projection(Appointment, None)
    assert _ids(session, _filter(Appointment, [Condition(itself, "Eq", one)])) == {one.id}
    assert _ids(session, _filter(Appointment, [Condition(one, "Eq", itself)])) == {one.id}
    assert _ids(session, _filter(Appointment, [Condition(itself, "Neq", one)])) == _where(
        data.appointments, lambda a: a is not one
    )


def test_a_record_with_a_composite_key_is_refused_not_matched_on_half_its_key(data):
    # Comparing on practice_id alone would match every practitioner of the practice.
    membership = data.memberships[0]
    with pytest.raises(UntranslatableFilter, match="composite primary key"):
        SqlAlchemyFilterAdapter().build_query(
            _filter(PracticeMembership, [Condition(Projection(PracticeMembership, None), "Eq", membership)])
        )


def test_a_record_compared_with_a_column_is_refused(data):
    # In memory `appointment.practice_id = practice` is false: SQL must not say `practice_id = 1`.
    practice = data.practices[0]
    with pytest.raises(UntranslatableFilter, match="compare its id field"):
        SqlAlchemyFilterAdapter().build_query(
            _filter(Appointment, [Condition(Projection(Appointment, "practice_id"), "Eq", practice)])
        )


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        (Condition(CHANGE_SEQ, "Lt", None), "against nil"),
        (Condition(None, "Geq", CHANGE_SEQ), "against nil"),
        (Condition(1, "In", SOURCE), "value in column"),
        (Condition(SOURCE, "Nin", 1), "needs a list"),
        (Condition(SOURCE, "Like", "x%"), "unknown comparison"),
    ],
)
def test_untranslatable_conditions_are_refused(condition, message):
    with pytest.raises(UntranslatableFilter, match=message):
        SqlAlchemyFilterAdapter().build_query(_filter(Appointment, [condition]))


def test_untranslatable_relations_are_refused():
    not_a_relation = FilterRelation(left=Practice, name="id", right=Grant)
    with pytest.raises(UntranslatableFilter, match="is not a relation"):
        SqlAlchemyFilterAdapter().build_query(_filter(Practice, [], relations=[not_a_relation]))
    twice = [GRANTS_OF_PRACTICE, FilterRelation(left=Practice, name="grants", right=Grant)]
    with pytest.raises(UntranslatableFilter, match="reached twice"):
        SqlAlchemyFilterAdapter().build_query(_filter(Practice, [], relations=twice))


def test_without_a_session_no_record_is_fetched_one_by_one():
    with pytest.raises(RuntimeError, match="disabled"):
        SqlAlchemyFilterAdapter().execute_query(select(Grant))


# ---------------------------------------------------------------------------
# Small policies: what oso compiles to SQL agrees with what oso decides in memory
# ---------------------------------------------------------------------------

HEADER = "actor Partner {}\nallow(p: Partner, action: String, r) if has_permission(p, action, r);\n"


def _small_oso(tmp_path: Path, body: str, session: Session | None = None) -> Oso:
    policy = tmp_path / "small.polar"
    policy.write_text(HEADER + body)
    return build_oso((policy,), adapter=SqlAlchemyFilterAdapter(session))


def _sql_and_memory(
    tmp_path: Path, session: Session, body: str, model: type, partner: Partner
) -> tuple[set[int], set[int]]:
    statement = _small_filter(tmp_path, body, partner, model)
    sql = {row.id for row in session.scalars(statement, {"request_time": NOW})}
    in_memory = _small_oso(tmp_path, body, session)
    actor = PartnerActor(partner.id, partner.name, NOW)
    memory = {row.id for row in session.scalars(select(model)) if in_memory.is_allowed(actor, "read", row)}
    return sql, memory


def _small_filter(tmp_path: Path, body: str, partner: Partner, model: type) -> Any:
    actor = PartnerActor(partner.id, partner.name, REQUEST_TIME)
    return _small_oso(tmp_path, body).authorized_query(actor, "read", model)


APPOINTMENT_BLOCK = 'resource Appointment { permissions = ["read"]; }\n'
PRACTICE_BLOCK = 'resource Practice { permissions = ["read"]; }\n'


@pytest.mark.parametrize(
    "rule",
    [
        "a.source_partner_id = p.id",
        "a.source_partner_id != p.id",  # nil != p.id holds
        "a.source_partner_id = nil",
        "a.source_partner_id != nil",
        'a.status in ["booked", "cancelled"]',
        "a.id < 5 and 2 < a.id",  # the immediate on either side
        "a.id >= 3 and a.id <= 6",
        "g in a.grants and g.partner_id = p.id and g.expires_at > p.request_time",
        "g in a.grants and g.partner_id = p.id and g.revoked_at = nil and g.appointments_read = true",
        "g in a.grants and p.request_time < g.expires_at and g.appointments_write = true",
    ],
)
def test_small_policy_rows_in_sql_are_the_rows_allowed_in_memory(tmp_path, session, data, rule):
    body = APPOINTMENT_BLOCK + f'has_permission(p: Partner, "read", a: Appointment) if {rule};\n'
    body = body.replace("(p: Partner", "(_p: Partner") if "p." not in rule else body
    for partner in data.partners:
        sql, memory = _sql_and_memory(tmp_path, session, body, Appointment, partner)
        assert sql == memory, (rule, partner.name)


def test_two_matching_grants_still_give_the_practice_once(tmp_path, session, data):
    body = (
        PRACTICE_BLOCK
        + 'has_permission(_p: Partner, "read", x: Practice) if g in x.grants and g.appointments_read = true;\n'
    )
    statement = _small_filter(tmp_path, body, data.partners[0], Practice)
    assert [p.id for p in session.scalars(statement, {"request_time": NOW})] == [data.practices[0].id]


def test_a_typed_helper_argument_compiles_to_false(tmp_path, session, data):
    # The pitfall docs/policy-guide.md warns about, and `policy check` reports.
    body = APPOINTMENT_BLOCK + (
        "ok(g: Grant) if g.appointments_read = true;\n"
        'has_permission(p: Partner, "read", a: Appointment) if g in a.grants and g.partner_id = p.id and ok(g);\n'
    )
    statement = _small_filter(tmp_path, body, data.partners[0], Appointment)
    assert session.scalars(statement, {"request_time": NOW}).all() == []


def test_a_rule_without_the_relation_beside_one_with_it_is_conservative_in_sql(tmp_path, session, data):
    # oso's filter lists relations once for all alternatives, so the adapter cannot tell which
    # alternative needs a grant: it requires one for all. SQL may then refuse what memory allows
    # (here: an appointment p1 booked at practice C, which has no grant at all), never the reverse.
    body = APPOINTMENT_BLOCK + (
        'has_permission(p: Partner, "read", a: Appointment) if a.source_partner_id = p.id;\n'
        'has_permission(p: Partner, "read", a: Appointment) if g in a.grants and g.partner_id = p.id;\n'
    )
    p1 = data.partners[0]
    sql, memory = _sql_and_memory(tmp_path, session, body, Appointment, p1)
    practice_c = data.practices[2].id
    assert sql <= memory
    assert memory - sql == _where(
        data.appointments, lambda a: a.practice_id == practice_c and a.source_partner_id == p1.id
    )


@dataclass(frozen=True)
class Fan:
    """An actor holding records, to reach the "record as a value" conditions through a policy."""

    id: int
    favorite: object


def test_a_policy_comparing_a_practitioner_record_is_refused_not_widened(session, data):
    oso = Oso()
    for name, (cls, fields) in POLAR_CLASSES.items():
        if name != "Partner":
            oso.register_class(cls, name=name, fields=fields)
    oso.register_class(Fan, name="Fan")
    oso.set_data_filtering_adapter(SqlAlchemyFilterAdapter())
    oso.load_str(
        "actor Fan {}\nallow(f: Fan, action: String, r) if has_permission(f, action, r);\n"
        'resource Practitioner { permissions = ["read"]; }\n'
        'has_permission(f: Fan, "read", m: Practitioner) if m = f.favorite;\n'
    )
    with pytest.raises(UntranslatableFilter, match="composite primary key"):
        oso.authorized_query(Fan(1, data.memberships[0]), "read", PracticeMembership)


# ---------------------------------------------------------------------------
# The real policy: for random grants and appointments, SQL and memory agree
# ---------------------------------------------------------------------------

OFFSETS = [timedelta(hours=-2), timedelta(seconds=-1), timedelta(0), timedelta(microseconds=1), timedelta(hours=2)]
grant_specs = st.lists(
    st.tuples(
        st.integers(0, 2),  # partner
        st.integers(0, 2),  # practice
        st.frozensets(st.sampled_from(list(Scope))),
        st.sampled_from(OFFSETS),  # expires_at - now
        st.booleans(),  # revoked
    ),
    max_size=6,
)
appointment_specs = st.lists(
    st.tuples(st.integers(0, 2), st.sampled_from(list(AppointmentStatus)), st.sampled_from([None, 0, 1, 2])),
    max_size=6,
)
CHECKED = [
    (Appointment, "read"),
    (Appointment, "reschedule"),
    (Appointment, "cancel"),
    (Practice, "read"),
    (Practice, "book"),
    (Patient, "read"),
    (PracticeMembership, "read"),
    (Grant, "read"),
]


@pytest.fixture
def base(sync_engine: Engine) -> dict[str, list[Any]]:
    """Partners, practices, a practitioner at each and a patient at each: committed once."""
    with Session(sync_engine, expire_on_commit=False) as session:
        partners = [Partner(name=f"partner{i}") for i in range(3)]
        practices = [Practice(name=f"practice{i}", address="x") for i in range(3)]
        doctor = Practitioner(first_name="C", last_name="M", specialty="g", rpps="10000000009")
        session.add_all([*partners, *practices, doctor])
        session.flush()
        patients = [Patient(practice_id=p.id, first_name="J", last_name="D", gender=Gender.MALE) for p in practices]
        session.add_all(
            [*patients, *(PracticeMembership(practice_id=p.id, practitioner_id=doctor.id) for p in practices)]
        )
        session.commit()
        return {"partners": partners, "practices": practices, "patients": patients, "doctor": [doctor]}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(grants=grant_specs, appointments=appointment_specs)
def test_compiled_filters_return_exactly_the_rows_allowed_in_memory(sync_engine, base, grants, appointments):
    now = datetime.now(UTC).replace(microsecond=500_000)
    partners, practices, patients = base["partners"], base["practices"], base["patients"]
    compiled = Authorizer()
    with Session(sync_engine) as session:
        live_pairs: set[tuple[int, int]] = set()
        for partner, practice, scopes, offset, revoked in grants:
            # The database keeps at most one unrevoked grant per partner and practice.
            revoked = revoked or (partner, practice) in live_pairs
            if not revoked:
                live_pairs.add((partner, practice))
            session.add(_grant(partners[partner], practices[practice], set(scopes), now + offset, revoked))
        for i, (practice, status, source) in enumerate(appointments):
            starts = now + timedelta(days=1, minutes=30 * i)
            session.add(
                Appointment(
                    practice_id=practices[practice].id,
                    practitioner_id=base["doctor"][0].id,
                    patient_id=patients[practice].id,
                    starts_at=starts,
                    ends_at=starts + timedelta(minutes=20),
                    status=status,
                    source_partner_id=None if source is None else partners[source].id,
                    change_seq=i,
                )
            )
        session.flush()
        in_memory = Authorizer(build_oso(adapter=SqlAlchemyFilterAdapter(session)))
        for partner in partners:
            actor = PartnerActor(partner.id, partner.name, now)
            for model, action in CHECKED:
                statement = compiled.filter(partner.id, action, model)
                sql = set(session.scalars(statement, {"request_time": now}))
                memory = {row for row in session.scalars(select(model)) if in_memory.is_allowed(actor, action, row)}
                assert sql == memory, (partner.name, model.__name__, action)
        session.rollback()
