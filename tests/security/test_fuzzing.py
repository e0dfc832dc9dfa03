"""Fuzzing with tools nobody on the project wrote, from the schema the server publishes.

- hypothesis-graphql generates queries and mutations from `api.schema.schema` (the SDL of
  schema.graphql), valid ones and ones with exactly one schema violation, with the world's ids,
  sensible page sizes and instants around its appointments mixed with arbitrary values, sent
  in-process under the keys of partners with every kind of grant.
- schemathesis, in GraphQL mode, loads the schema by introspection from the app (in-process ASGI,
  with a key) and fuzzes every root field with its own generators, valid and invalid.

Whatever is sent: no 5xx, no INTERNAL_SERVER_ERROR, every error carries a code of the API's
vocabulary, and every `data` conforms to the schema (tests/security/conformance.py). Bounded:
60 examples per hypothesis-graphql test and 15 per schemathesis operation and mode, no deadline;
both run on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta, timezone

import pytest
import schemathesis
from graphql import parse
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, from_schema, nodes
from schemathesis.generation.modes import GenerationMode
from schemathesis.python import asgi

from api.http.app import create_app
from api.schema import schema as api_schema
from api.settings import Settings
from tests.client import ACCEPT
from tests.security.conformance import data_violations, error_contract_violations
from tests.world import DAY, WINDOW, World

SDL = api_schema.as_str()
GRAPHQL_SCHEMA = api_schema._schema
ROOT_FIELDS = sorted({*GRAPHQL_SCHEMA.query_type.fields, *GRAPHQL_SCHEMA.mutation_type.fields})  # type: ignore[union-attr]
PARTNERS = ["full", "no-contact", "reader", "other", "writer-only", "unconnected"]
UNLIMITED = {"budget_capacity": 10**9, "budget_refill_per_second": 10**6}
FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


def offsets() -> st.SearchStrategy[timezone]:
    return st.integers(-14 * 60, 14 * 60).map(lambda minutes: timezone(timedelta(minutes=minutes)))


def instants() -> st.SearchStrategy[str]:
    """Mostly instants around the world's day (so windows and bookings can be valid), in any
    offset; then any instant from year 1 to 9999, naive ones and junk."""
    near = st.builds(
        lambda minutes, zone: (DAY + timedelta(minutes=minutes)).astimezone(zone).isoformat(),
        st.integers(-2 * 1440, 3 * 1440).map(lambda m: m - m % 30),
        offsets(),
    )
    anywhere = st.datetimes(timezones=offsets() | st.none()).map(lambda d: d.isoformat())
    return st.one_of(near, near, near, st.sampled_from([w.isoformat() for w in WINDOW]), anywhere, st.text(max_size=30))


def custom_scalars(world: World) -> dict[str, st.SearchStrategy]:
    known_ids = [
        *(world.practice_id(p) for p in "ABC"),
        *(i for ids in world.appointments.values() for i in ids),
        *(i for ids in world.patients.values() for i in ids),
        *(i for ids in world.practitioners.values() for i in ids),
    ]
    return {
        "ID": st.one_of(st.sampled_from(known_ids), st.sampled_from(known_ids), st.text(max_size=40)).map(nodes.String),
        "Int": st.one_of(st.integers(1, 10), st.integers(1, 10), st.integers(-(2**31), 2**31 - 1)).map(nodes.Int),
        "DateTime": instants().map(nodes.String),
        "Date": st.one_of(st.dates().map(lambda d: d.isoformat()), st.text(max_size=12)).map(nodes.String),
    }


def violations(status: int, body: object, document: str) -> list[str]:
    problems = error_contract_violations(body)
    if problems:
        return problems
    assert isinstance(body, dict)
    codes = {e["extensions"]["code"] for e in body.get("errors", [])}
    if status >= 500 or "INTERNAL_SERVER_ERROR" in codes:
        problems.append(f"server error {status} {codes}")
    if body.get("data") is not None and status != 200:  # a refusal as a whole may be 200 too (NOT_FOUND)
        problems.append(f"HTTP {status} with data")
    if body.get("data") is not None:  # then the document parsed; a refused one need not
        problems += data_violations(GRAPHQL_SCHEMA, parse(document), body["data"])
    return problems


@pytest.fixture
def fuzzed_api(make_api):
    return make_api(**UNLIMITED)


@FUZZ
@given(data=st.data(), partner=st.sampled_from(PARTNERS))
async def test_generated_operations_never_fail_the_server_and_conform_to_the_schema(fuzzed_api, world, data, partner):
    # One root field or several: a document with many fails as a whole more often than not.
    fields = data.draw(st.sampled_from([[f] for f in ROOT_FIELDS]) | st.none(), label="root fields")
    # U+0000 in literals is refused as a whole (test_malformed_http.py); here it would only hide the rest.
    document = data.draw(
        from_schema(SDL, fields=fields, custom_scalars=custom_scalars(world), allow_x00=False), label="document"
    )
    response = await fuzzed_api.http.post(
        "/graphql",
        json={"query": document},
        headers={"Authorization": f"Bearer {world.keys[partner]}", "Accept": ACCEPT},
    )
    body = response.json()
    event(
        f"HTTP {response.status_code}, {'data' if body.get('data') else 'no data'}, "
        f"{sorted({e.get('extensions', {}).get('code') for e in body.get('errors', [])})}"
    )
    assert violations(response.status_code, body, document) == [], (document, response.text)


@FUZZ
@given(data=st.data())
async def test_operations_with_one_schema_violation_are_refused_as_bad_input(fuzzed_api, world, data):
    document = data.draw(from_schema(SDL, custom_scalars=custom_scalars(world), mode=Mode.NEGATIVE), label="document")
    response = await fuzzed_api.http.post(
        "/graphql",
        json={"query": document},
        headers={"Authorization": f"Bearer {world.keys['full']}", "Accept": ACCEPT},
    )
    body = response.json()
    assert error_contract_violations(body) == [], (document, response.text)
    assert response.status_code == 400 and {e["extensions"]["code"] for e in body["errors"]} == {"BAD_USER_INPUT"}, (
        document,
        response.text,
    )


def test_schemathesis_finds_no_server_error_nor_schema_violation(database_url, world):
    """schemathesis' own `response_schema_conformance` check, plus ours. Its `not_a_server_error`
    check is not used as is: it counts every error with a `path` (NOT_FOUND for a random id) as a
    server failure, whereas this API labels each error with its code; a 5xx or an
    INTERNAL_SERVER_ERROR is what our check calls a server error."""
    app = create_app(Settings(database_url=database_url, secret_key="test-secret", **UNLIMITED))
    auth = {"Authorization": f"Bearer {world.keys['full']}"}
    loaded = schemathesis.graphql.from_asgi("/graphql", app, headers=auth)
    operations = [result.ok() for result in loaded.get_all_operations()]
    assert {op.label for op in operations} >= {"Query.appointments", "Query.node", "Mutation.bookAppointment"}

    def ours(ctx, response, case) -> None:
        problems = violations(response.status_code, response.json(), case.body)  # the document
        assert problems == [], problems

    try:
        for operation in operations:
            for mode in GenerationMode:

                @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
                @given(case=operation.as_strategy(generation_mode=mode))
                def fuzz(case) -> None:
                    response = case.call(headers=auth)
                    case.validate_response(
                        response, checks=[schemathesis.checks.response_schema_conformance], additional_checks=[ours]
                    )

                fuzz()
    finally:
        asgi.shutdown_lifespans()  # closes the app's engine before the database is dropped
