"""No suggestions anywhere: a misspelt name is refused without naming what exists.

graphql-core adds "Did you mean 'newPatient'?" to validation errors (fields, arguments, types, enum
values, input fields, directives) and to the coercion errors of variables: to whoever probes with
near-misses, that describes the schema one name at a time. Each case misspells one name and
checks that no message suggests, or quotes, the name it stands for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.world import window_args


@dataclass
class Misspelling:
    name: str
    query: str
    hidden: str  # the name a suggestion would give away
    variables: dict[str, Any] = field(default_factory=dict)


WINDOW = 'from: "2026-12-01T00:00:00+01:00", to: "2026-12-02T00:00:00+01:00"'
BOOK = "mutation($input: BookAppointmentInput!) { bookAppointment(input: $input) { __typename } }"
BOOKING = {"practiceId": "prc_x", "practitionerId": "prn_x", "startsAt": "2027-01-04T09:00:00+01:00",
           "endsAt": "2027-01-04T09:30:00+01:00"}
PATIENT = {"firstName": "Ada", "lastName": "Martin", "gender": "FEMALE"}
BOOK_LITERAL = ('mutation { bookAppointment(input: { practiceId: "prc_x", practitionerId: "prn_x", '
                'startsAt: "2027-01-04T09:00:00+01:00", endsAt: "2027-01-04T09:30:00+01:00", %s }) { __typename } }')
STATUS = ("query($p: ID!, $s: AppointmentStatus) { appointments(practiceId: $p, %s, first: 1, status: $s) "
          "{ edges { node { id } } } }" % WINDOW)

CASES = [
    Misspelling("field", "{ viewer { nme } }", "name"),
    Misspelling("root field", "{ practises(first: 1) { edges { node { id } } } }", "practices"),
    Misspelling("argument", "{ practices(frist: 1) { edges { node { id } } } }", "first"),
    Misspelling("type in a fragment condition", '{ node(id: "x") { ... on Appointmnt { id } } }', "Appointment"),
    Misspelling("type of a variable", "query($s: AppointmentStats) { viewer { name } }", "AppointmentStatus"),
    Misspelling("directive", "{ viewer { name @skp(if: true) } }", "skip"),
    Misspelling(
        "enum value in a literal",
        '{ appointments(practiceId: "prc_x", %s, first: 1, status: BOOKD) { edges { node { id } } } }' % WINDOW,
        "BOOKED",
    ),
    Misspelling("enum value in variables", STATUS, "BOOKED", {"p": "prc_x", "s": "BOOKD"}),
    Misspelling(
        "input field in a literal",
        BOOK_LITERAL % 'newPatiant: { firstName: "Ada", lastName: "Martin", gender: FEMALE }',
        "newPatient",
    ),
    Misspelling(
        "nested input field in a literal",
        BOOK_LITERAL % 'newPatient: { firstName: "Ada", lastName: "Martin", gender: FEMALE, phnoe: "0601" }',
        "phone",
    ),
    Misspelling(
        "enum value in a nested literal",
        BOOK_LITERAL % 'newPatient: { firstName: "Ada", lastName: "Martin", gender: FEMAL }',
        "FEMALE",
    ),
    Misspelling("input field in variables", BOOK, "newPatient", {"input": {**BOOKING, "newPatiant": PATIENT}}),
    Misspelling(
        "nested input field in variables",
        BOOK,
        "phone",
        {"input": {**BOOKING, "newPatient": {**PATIENT, "phnoe": "0601"}}},
    ),
    Misspelling(
        "enum value nested in variables",
        BOOK,
        "FEMALE",
        {"input": {**BOOKING, "newPatient": {**PATIENT, "gender": "FEMAL"}}},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_a_misspelt_name_is_refused_without_suggesting_the_right_one(api, world, case: Misspelling):
    response = await api.query(world.keys["full"], case.query, case.variables)
    assert response.status == 400 and response.codes == {"BAD_USER_INPUT"}, response.body
    messages = json.dumps([error["message"] for error in response.errors])
    assert "did you mean" not in messages.lower(), messages
    assert f"'{case.hidden}'" not in messages and f'\\"{case.hidden}\\"' not in messages, messages


def test_every_misspelling_stands_for_a_real_name():
    """The table tests something: each hidden name is one the schema has (or a built-in directive)."""
    from api.schema import schema

    names = schema.as_str() + " @skip @include"
    for case in CASES:
        assert case.hidden in names, case.name


async def test_the_status_case_is_served_with_the_right_value(api, world):
    """The enum cases are a valid page but for the misspelt value: with the right one it is served."""
    variables = {"p": world.practice_id("A"), "s": "BOOKED"}
    query = STATUS.replace(WINDOW, 'from: "%s", to: "%s"' % (window_args()["from"], window_args()["to"]))
    response = await api.query(world.keys["full"], query, variables)
    assert response.status == 200 and response.errors == [], response.body
