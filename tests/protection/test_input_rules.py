"""Every string the API takes in is checked against its `@constraint` before the database sees it:
over-long or malformed input is BAD_USER_INPUT naming the field, on both databases (PostgreSQL
refuses a value longer than its column mid-write, SQLite stores it), and valid input is stored as given."""

from __future__ import annotations

import itertools
import string
import unicodedata
import weakref
from datetime import timedelta

import pytest
from graphql import get_named_type, is_input_object_type
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.data import models
from api.protection.input_rules import Constraint
from api.protection.input_validation import ValidatedInput
from api.schema import schema
from tests.world import DAY

BOOK = """mutation($input: BookAppointmentInput!) { bookAppointment(input: $input) {
  __typename ... on AppointmentBooked { appointment { id patient { id } } } ... on WriteRefused { reason } } }"""
# The input fields stored in a column, and that column: the rule's size must be the column's.
STORED_IN = {
    ("NewPatientInput", "firstName"): models.Patient.first_name,
    ("NewPatientInput", "lastName"): models.Patient.last_name,
    ("NewPatientInput", "phone"): models.Patient.phone,
    ("NewPatientInput", "email"): models.Patient.email,
    ("BookAppointmentInput", "reason"): models.Appointment.reason,
    ("BookAppointmentInput", "idempotencyKey"): models.IdempotencyRecord.key,
    ("RescheduleAppointmentInput", "idempotencyKey"): models.IdempotencyRecord.key,
    ("BookAppointmentInput", "practiceId"): models.Practice.public_id,
    ("BookAppointmentInput", "practitionerId"): models.PracticeMembership.public_id,
    ("BookAppointmentInput", "patientId"): models.Patient.public_id,
    ("RescheduleAppointmentInput", "appointmentId"): models.Appointment.public_id,
}


def _constraint(definition) -> Constraint | None:  # a GraphQL argument or input field
    strawberry_definition = (definition.extensions or {}).get("strawberry-definition")
    return next((d for d in getattr(strawberry_definition, "directives", ()) if isinstance(d, Constraint)), None)


def _is_string(graphql_type) -> bool:
    return get_named_type(graphql_type).name in ("String", "ID")


def test_every_string_argument_and_input_field_has_a_constraint_checked_by_its_field():
    graphql_schema = schema._schema
    unruled, unchecked = [], []
    for type_ in graphql_schema.type_map.values():
        if type_.name.startswith("__"):
            continue
        if is_input_object_type(type_):
            unruled += [
                f"{type_.name}.{name}"
                for name, f in type_.fields.items()
                if _is_string(f.type) and _constraint(f) is None
            ]
        for name, field in getattr(type_, "fields", {}).items() if not is_input_object_type(type_) else ():
            takes_text = any(
                _is_string(a.type) or is_input_object_type(get_named_type(a.type)) for a in field.args.values()
            )
            unruled += [
                f"{type_.name}.{name}({a})"
                for a, arg in field.args.items()
                if _is_string(arg.type) and _constraint(arg) is None
            ]
            extensions = getattr((field.extensions or {}).get("strawberry-definition"), "extensions", ())
            if takes_text and not any(isinstance(e, ValidatedInput) for e in extensions):
                unchecked.append(f"{type_.name}.{name}")
    assert unruled == [] and unchecked == []


@pytest.mark.parametrize(
    ("input_field", "column"), list(STORED_IN.items()), ids=lambda v: ".".join(v) if isinstance(v, tuple) else ""
)
def test_the_size_an_input_accepts_is_its_columns(input_field, column):
    type_name, field_name = input_field
    rule = _constraint(schema._schema.type_map[type_name].fields[field_name])
    assert rule is not None and rule.max_length == column.type.length


def booking(world, start, **extra):
    return {
        "practiceId": world.practice_id("A"),
        "practitionerId": world.practitioners["A"][0],
        "startsAt": start.isoformat(),
        "endsAt": (start + timedelta(minutes=10)).isoformat(),
        **extra,
    }


def new_patient(**fields):
    return {"firstName": "Léa", "lastName": "Martin", "gender": "FEMALE", **fields}


async def test_a_first_name_longer_than_its_column_is_bad_input_on_that_field(api, world):
    response = await api.query(
        world.keys["full"],
        BOOK,
        {"input": booking(world, DAY + timedelta(days=3), newPatient=new_patient(firstName="L" * 101))},
    )
    # refused at its field, before the resolver: a field error (data null, 200 in GraphQL over HTTP)
    assert response.status == 200 and response.data is None, response.body
    [error] = response.errors
    assert error["extensions"] == {
        "code": "BAD_USER_INPUT",
        "argument": "input",
        "field": "newPatient.firstName",
        "limit": "maxLength",
        "maximum": 100,
    }
    assert "at most 100 characters" in error["message"]


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"newPatient": new_patient(phone="0" * 33)}, "newPatient.phone"),
        ({"newPatient": new_patient(email=f"{'a' * 64}@{'b' * 185}.fr")}, "newPatient.email"),
        ({"newPatient": new_patient(email="jean.dupont@")}, "newPatient.email"),
        ({"newPatient": new_patient(phone="call me")}, "newPatient.phone"),
        ({"newPatient": new_patient(lastName="   ")}, "newPatient.lastName"),
        ({"newPatient": new_patient(lastName="Mar\x1btin")}, "newPatient.lastName"),
        ({"newPatient": new_patient(), "reason": "x" * 1001}, "reason"),
        ({"newPatient": new_patient(), "idempotencyKey": "k" * 101}, "idempotencyKey"),
        ({"newPatient": new_patient(), "idempotencyKey": ""}, "idempotencyKey"),
        ({"patientId": "pat_" + "a" * 40}, "patientId"),
    ],
)
async def test_malformed_input_is_bad_input_on_its_field(api, world, arguments, field):
    response = await api.query(
        world.keys["full"], BOOK, {"input": booking(world, DAY + timedelta(days=3), **arguments)}
    )
    assert response.status == 200 and response.data is None, response.body  # a field error
    assert [e["extensions"]["field"] for e in response.errors] == [field], response.body


async def test_a_cursor_and_ids_name_their_argument(api, world):
    long_cursor = await api.query(
        world.keys["full"],
        "query($a: String) { practices(first: 1, after: $a) { edges { cursor } } }",
        {"a": "A" * 5000},
    )
    assert (
        long_cursor.errors[0]["extensions"]["field"] == "after"
        and long_cursor.errors[0]["extensions"]["maximum"] == 1024
    )
    ids = await api.query(
        world.keys["full"],
        "query($ids: [ID!]!) { nodes(ids: $ids) { id } }",
        {"ids": [world.practice_id("A"), "x" * 33]},
    )
    assert ids.errors[0]["extensions"]["field"] == "ids[1]" and ids.errors[0]["extensions"]["argument"] == "ids"


# Text as people type it, whatever the script, and the odd characters a hostile client sends.
visible = st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp"))
odd = st.sampled_from(["\x00", "\x07", "\n", "\r", "\x1b", "\x7f", "\u2028", "\u0085"])


def line(max_size: int) -> st.SearchStrategy[str]:
    return st.text(visible, min_size=1, max_size=max_size).filter(lambda s: s.strip())


def too_long(size: int) -> st.SearchStrategy[str]:
    return st.text(visible, min_size=size + 1, max_size=size + 40)


def with_odd(valid: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.tuples(valid, odd, st.integers(0, 1000)).map(
        lambda t: t[0][: t[2] % (len(t[0]) + 1)] + t[1] + t[0][t[2] % (len(t[0]) + 1) :]
    )


phone = st.builds(
    lambda plus, groups: ("+" if plus else "") + " ".join(groups),
    st.booleans(),
    st.lists(st.text("0123456789", min_size=1, max_size=3), min_size=2, max_size=5),
).filter(lambda p: 3 <= sum(c.isdigit() for c in p) <= 15)
email = st.builds(
    lambda local, labels: f"{local}@{'.'.join(labels)}.fr",
    st.text(string.ascii_letters + string.digits + "._-+", min_size=1, max_size=64).filter(
        lambda s: not s.startswith(".") and not s.endswith(".") and ".." not in s
    ),
    st.lists(st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=60), min_size=1, max_size=3),
).filter(lambda e: len(e) <= 254)
# Each field: (strategy of valid values, its column size, whether the valid value is stored stripped)
FIELDS = {
    "firstName": (line(100), 100, True),
    "lastName": (line(100), 100, True),
    "phone": (phone, 32, False),
    "email": (email, 254, False),
    "reason": (
        st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=1000).filter(
            lambda s: all(c in "\t\n\r" or not (c < " " or "\x7f" <= c <= "\x9f" or c in "\u2028\u2029") for c in s)
        ),
        1000,
        False,
    ),
}
case = st.sampled_from(sorted(FIELDS)).flatmap(
    lambda name: st.tuples(
        st.just(name),
        st.one_of(
            FIELDS[name][0].map(lambda v: ("valid", v)),
            too_long(FIELDS[name][1]).map(lambda v: ("too long", v)),
            with_odd(FIELDS[name][0].filter(bool)).map(lambda v: ("odd", v))
            if name != "reason"
            else with_odd(st.text(visible, min_size=1, max_size=100))
            .filter(lambda v: any(c in v for c in "\x00\x07\x1b\x7f\u2028\u0085"))
            .map(lambda v: ("odd", v)),
        ),
    )
)
starts = itertools.count()
apis: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # one app per test, not per example


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(example=case)
async def test_any_text_up_to_and_beyond_its_column_is_stored_exactly_or_refused_on_its_field(
    make_api, world, sync_engine, example
):
    name, (kind, value) = example
    if make_api not in apis:
        apis[make_api] = make_api(budget_capacity=1_000_000, budget_refill_per_second=1_000_000.0)
    api = apis[make_api]
    start = DAY + timedelta(days=30, minutes=15 * next(starts))
    arguments = (
        {"reason": value, "newPatient": new_patient()}
        if name == "reason"
        else {"newPatient": new_patient(**{name: value})}
    )
    response = await api.query(world.keys["full"], BOOK, {"input": booking(world, start, **arguments)})

    assert response.status < 500 and "INTERNAL_SERVER_ERROR" not in response.codes, response.body
    if kind != "valid" and "\x00" in value:  # refused by the HTTP layer, before GraphQL parses a thing
        assert response.status == 400 and response.codes == {"BAD_USER_INPUT"}, response.body
        return
    if kind != "valid":
        field = name if name == "reason" else f"newPatient.{name}"
        assert response.status == 200 and [e["extensions"]["field"] for e in response.errors] == [field], (
            kind,
            response.body,
        )
        return
    assert response.errors == [] and response.data["bookAppointment"]["__typename"] == "AppointmentBooked", (
        response.body
    )
    with Session(sync_engine) as session:
        appointment = session.scalar(
            select(models.Appointment).where(
                models.Appointment.public_id == response.data["bookAppointment"]["appointment"]["id"]
            )
        )
        stored = (
            appointment.reason
            if name == "reason"
            else getattr(appointment.patient, {"firstName": "first_name", "lastName": "last_name"}.get(name, name))
        )
    assert stored == (value.strip() if FIELDS[name][2] else value)


def test_every_control_character_is_refused_and_free_text_keeps_its_line_breaks():
    from api.protection.input_rules import violation
    from api.schema import constraints

    controls = [chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) == "Cc"] + ["\u2028", "\u2029"]
    assert [c for c in controls if violation(constraints.LAST_NAME, f"Mar{c}tin") is None] == []
    assert [c for c in controls if violation(constraints.REASON, f"Motif{c}") is None] == ["\t", "\n", "\r"]
