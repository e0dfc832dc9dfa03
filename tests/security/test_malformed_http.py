"""Malformed requests at the HTTP layer: each gets a 4xx (or the 200 of a field error, below) and a
JSON body whose every error has `extensions.code`; never a 5xx, a stack trace or plain text; and
the bad value never reaches the database.

The rule, GraphQL over HTTP with `application/graphql-response+json` (what a modern client accepts;
`application/json` answers request errors 200, tests/http/test_graphql_over_http.py):
- a request that is not a GraphQL request at all (body not JSON, not UTF-8, nested past the
  parser, not an object, a batch; `query` not a string; a method other than GET and POST; too
  large) is refused before anything runs: 4xx (400; 405 for a method or a mutation over GET; 413
  for a size; 415 for a content type other than JSON), BAD_USER_INPUT, no `data`;
- a GraphQL request whose document does not parse or validate, or whose variables do not coerce
  (a date that is no date, an Int past 32 bits, a string holding U+0000), is refused as a whole:
  400, BAD_USER_INPUT, no `data` entry;
- an argument a resolver refuses (a forged or truncated cursor, an id of the wrong kind where a
  practice id is expected) is BAD_USER_INPUT, a field error: 200 with `data` null when nothing
  could be served (the specification's 2xx for a response with a `data` entry);
- an id of any form that names nothing the partner may see is NOT_FOUND, a field error answered
  200 like for an existing but hidden object (README: the two answer alike).

"Never reaches the database" is checked on every SQL statement the app runs for the request:
none carries the bad value among its parameters, and none reads appointments or patients.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import event

from api.http.media_types import GRAPHQL_RESPONSE
from tests.client import ApiClient
from tests.world import World, window_args

PAGE = """query Page($p: ID!, $from: DateTime!, $to: DateTime!, $n: Int!, $after: String) {
  appointments(practiceId: $p, from: $from, to: $to, first: $n, after: $after) {
    edges { node { id } } pageInfo { endCursor } } }"""
NODES = "query($ids: [ID!]!) { nodes(ids: $ids) { id } }"
CANCEL = (
    "mutation Cancel($id: ID!) { "
    "cancelAppointment(appointmentId: $id) { ... on AppointmentCancelled { appointment { id status } } } }"
)
BOOK = """mutation($input: BookAppointmentInput!) { bookAppointment(input: $input) {
  __typename ... on WriteRefused { reason } } }"""
BUSINESS_TABLES = re.compile(r"\b(appointments|patients)\b")

Request = Callable[[ApiClient, World], Awaitable[dict[str, Any]]]


@dataclass
class Malformed:
    name: str
    request: Request  # httpx.request keyword arguments, the key added unless the case sets headers
    status: int
    code: str
    bad: object = None  # the value that must not reach the database


def post(body: object) -> Request:
    async def make(api: ApiClient, world: World) -> dict[str, Any]:
        return {"method": "POST", "json": body(world) if callable(body) else body}

    return make


def raw(
    content: bytes | Callable[[World], bytes | AsyncIterator[bytes]],
    content_type: str | None = "application/json",
    **headers: str,
) -> Request:
    async def make(api: ApiClient, world: World) -> dict[str, Any]:
        kinds = {"content-type": content_type} if content_type is not None else {}
        return {
            "method": "POST",
            "content": content(world) if callable(content) else content,
            "headers": {**kinds, **headers},
        }

    return make


def page(**variables: object) -> Request:
    """The page query with these variables over the valid ones."""
    return post(lambda world: {"query": PAGE, "variables": {**valid_page(world), **variables}})


def valid_page(world: World) -> dict[str, object]:
    return {"p": world.practice_id("A"), **window_args(), "n": 2}


def booking(**fields: object) -> Request:
    """The booking mutation, these input fields over an hour of practice A's first practitioner;
    a field given as a function is given the world."""

    def body(world: World) -> dict[str, object]:
        given = {name: value(world) if callable(value) else value for name, value in fields.items()}
        slot = {
            "practiceId": world.practice_id("A"),
            "practitionerId": world.practitioners["A"][0],
            "startsAt": window_args()["to"],
            "endsAt": window_args()["to"].replace("T08", "T09"),
        }
        return {"query": BOOK, "variables": {"input": {**slot, **given}}}

    return post(body)


def with_cursor(alter: Callable[[str], str]) -> Request:
    """The page query after a cursor the server issued, altered."""

    async def make(api: ApiClient, world: World) -> dict[str, Any]:
        first = await api.query(world.keys["full"], PAGE, valid_page(world))
        cursor = first.data["appointments"]["pageInfo"]["endCursor"]
        return {"method": "POST", "json": {"query": PAGE, "variables": {**valid_page(world), "after": alter(cursor)}}}

    return make


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


CASES = [
    # Not a GraphQL request
    Malformed("invalid JSON", raw(b'{"query": "{ viewer { name } }'), 400, "BAD_USER_INPUT"),
    Malformed("empty body", raw(b""), 400, "BAD_USER_INPUT"),
    Malformed("JSON null", raw(b"null"), 400, "BAD_USER_INPUT"),
    Malformed("JSON string", raw(b'"{ viewer { name } }"'), 400, "BAD_USER_INPUT"),
    Malformed("JSON number", raw(b"42"), 400, "BAD_USER_INPUT"),
    Malformed("JSON array: batching is off", post([{"query": "{ viewer { name } }"}] * 2), 400, "BAD_USER_INPUT"),
    Malformed("non-UTF-8 bytes", raw(b'{"query": "{ viewer { name\xff } }"}'), 400, "BAD_USER_INPUT"),
    Malformed(
        "latin-1 declared",
        raw(b'{"query": "{ viewer { name } }", "x": "\xe9"}', "application/json; charset=latin-1"),
        400,
        "BAD_USER_INPUT",
    ),
    Malformed("UTF-16 encoded", raw('{"query": "{ viewer { name } }"}'.encode("utf-16")), 400, "BAD_USER_INPUT"),
    Malformed("UTF-32 encoded", raw('{"query": "{ viewer { name } }"}'.encode("utf-32")), 400, "BAD_USER_INPUT"),
    Malformed(
        "UTF-8 with a byte-order mark",
        raw('{"query": "{ viewer { name } }"}'.encode("utf-8-sig")),
        400,
        "BAD_USER_INPUT",
    ),
    Malformed(
        "query twice: a mutation behind a read",
        raw(
            lambda world: (
                '{"query": "{ viewer { name } }", "query": '
                + json.dumps(CANCEL)
                + ', "variables": {"id": "'
                + world.appointments["A"][0]
                + '"}}'
            ).encode()
        ),
        400,
        "BAD_USER_INPUT",
    ),
    Malformed(
        "a variable twice",
        raw(
            lambda world: (
                '{"query": ' + json.dumps(CANCEL) + ', "variables": {"id": "apt_first", "id": "apt_second"}}'
            ).encode()
        ),
        400,
        "BAD_USER_INPUT",
        "apt_second",
    ),
    Malformed(
        "operationName twice",
        raw(
            b'{"query": "query A { viewer { name } } query B { viewer { id } }", '
            b'"operationName": "A", "operationName": "B"}'
        ),
        400,
        "BAD_USER_INPUT",
    ),
    Malformed(
        "query twice in the query string",
        lambda api, world: _get_pairs([("query", "{ viewer { name } }"), ("query", "{ viewer { id } }")]),
        400,
        "BAD_USER_INPUT",
    ),
    Malformed(
        "query twice among 9,000 parameters (counted once each: 0.7 s of a worker when counted pairwise)",
        lambda api, world: _get_pairs(
            [(f"p{i}", "") for i in range(9_000)] + [("query", "{ viewer { name } }"), ("query", "{ viewer { id } }")]
        ),
        400,
        "BAD_USER_INPUT",
    ),
    Malformed(  # Python reads no integer of more than 4,300 digits: it was a masked server error
        "an Int literal of 4,301 digits",
        post({"query": "{ practices(first: " + "9" * 4301 + ") { totalCount } }"}),
        400,
        "BAD_USER_INPUT",
    ),
    Malformed(
        "a Float literal of 5,002 characters",
        post({"query": "{ practices(first: 1" + "0" * 5000 + ".5) { totalCount } }"}),
        400,
        "BAD_USER_INPUT",
    ),
    Malformed("query is a number", post({"query": 5}), 400, "BAD_USER_INPUT"),
    Malformed("query is a list", post({"query": ["{ viewer { name } }"]}), 400, "BAD_USER_INPUT"),
    Malformed("query is an object", post({"query": {"viewer": "name"}}), 400, "BAD_USER_INPUT"),
    Malformed("no query", post({"variables": {}}), 400, "BAD_USER_INPUT"),
    Malformed(
        "variables are a string", post({"query": "{ viewer { name } }", "variables": "{}"}), 400, "BAD_USER_INPUT"
    ),
    Malformed("text/plain", raw(b'{"query": "{ viewer { name } }"}', "text/plain"), 415, "BAD_USER_INPUT"),
    Malformed(
        "a gzip body",
        raw(gzip.compress(b'{"query": "{ viewer { name } }"}'), **{"content-encoding": "gzip"}),
        415,
        "BAD_USER_INPUT",
    ),
    Malformed("no content type", raw(b'{"query": "{ viewer { name } }"}', None), 415, "BAD_USER_INPUT"),
    Malformed("XML", raw(b"<query>{ viewer { name } }</query>", "application/xml"), 415, "BAD_USER_INPUT"),
    Malformed(
        "a url-encoded form", raw(b"query=%7B+viewer+%7B+name+%7D+%7D", "application/x-www-form-urlencoded"), 415,
        "BAD_USER_INPUT",
    ),
    Malformed("multipart", raw(b"--x\r\n\r\n--x--", "multipart/form-data; boundary=x"), 415, "BAD_USER_INPUT"),
    Malformed(
        "huge body", post({"query": "{ viewer { name } }", "variables": {"pad": "x" * 70_000}}), 413, "BAD_USER_INPUT"
    ),
    Malformed(
        "huge body sent chunked, without length",
        raw(lambda _: chunks(b'{"query": "{ viewer { name } }", "pad": "', b"x" * 70_000, b'"}')),
        413,
        "BAD_USER_INPUT",
    ),
    Malformed(
        "Content-Length not a number",
        raw(b'{"query": "{ viewer { name } }"}', **{"content-length": "12a"}),
        413,
        "BAD_USER_INPUT",
    ),
    Malformed(
        "variables nested 30,000 deep",
        raw(('{"query": "{ viewer { name } }", "variables": {"a": ' + nested(30_000) + "}}").encode()),
        400,
        "BAD_USER_INPUT",
    ),
    Malformed(
        "a 5,000-digit number",
        raw(('{"query": "{ viewer { name } }", "variables": {"a": ' + "9" * 5000 + "}}").encode()),
        400,
        "BAD_USER_INPUT",
    ),
    # Not a valid operation, or variables that do not coerce
    Malformed(
        "unknown operationName",
        post({"query": "query A { viewer { name } }", "operationName": "B"}),
        400,
        "BAD_USER_INPUT",
    ),
    Malformed(
        "operationName not a string",
        post({"query": "query A { viewer { name } }", "operationName": ["A"]}),
        400,
        "BAD_USER_INPUT",
    ),
    Malformed(
        "two anonymous operations", post({"query": "{ viewer { name } } { viewer { id } }"}), 400, "BAD_USER_INPUT"
    ),
    Malformed(
        "two named operations, no operationName",
        post({"query": "query A { viewer { name } } query B { viewer { id } }"}),
        400,
        "BAD_USER_INPUT",
    ),
    Malformed(
        "variables nested 200 deep into a list of ids",
        post(lambda world: {"query": NODES, "variables": {"ids": json.loads(nested(200))}}),
        400,
        "BAD_USER_INPUT",
    ),
    Malformed("Int given a string", page(n="five"), 400, "BAD_USER_INPUT", "five"),
    Malformed("Int of 2**31", page(n=2**31), 400, "BAD_USER_INPUT", 2**31),
    Malformed("Int of 2**63", page(n=2**63), 400, "BAD_USER_INPUT", 2**63),
    Malformed(
        "Int of 1e309",
        raw(
            lambda world: (
                json.dumps({"query": PAGE, "variables": {**valid_page(world), "n": 5}})
                .replace('"n": 5', '"n": 1e309')
                .encode()
            )
        ),
        400,
        "BAD_USER_INPUT",
    ),
    Malformed(
        "Int literal of 2**63",
        post(
            lambda world: {
                "query": PAGE.replace("first: $n", f"first: {2**63}").replace(", $n: Int!", ""),
                "variables": {k: v for k, v in valid_page(world).items() if k != "n"},
            }
        ),
        400,
        "BAD_USER_INPUT",
        2**63,
    ),
    Malformed("ID given an object", page(p={"id": 1}), 400, "BAD_USER_INPUT"),
    Malformed(
        "enum given an unknown value",
        post(
            lambda world: {
                "query": PAGE.replace("after: $after", "after: $after, status: $s").replace(
                    "$after: String", "$after: String, $s: AppointmentStatus"
                ),
                "variables": {**valid_page(world), "s": "DROP TABLE"},
            }
        ),
        400,
        "BAD_USER_INPUT",
        "DROP TABLE",
    ),
    Malformed("month 13", page(**{"from": "2026-13-01T00:00:00+01:00"}), 400, "BAD_USER_INPUT", "2026-13-01"),
    Malformed("February 30", page(**{"from": "2026-02-30T00:00:00+01:00"}), 400, "BAD_USER_INPUT", "2026-02-30"),
    Malformed("offset of +25:00", page(**{"from": "2026-12-01T00:00:00+25:00"}), 400, "BAD_USER_INPUT", "+25:00"),
    Malformed(
        "a time zone name", page(**{"from": "2026-12-01T00:00:00 Europe/Paris"}), 400, "BAD_USER_INPUT", "Europe/Paris"
    ),
    Malformed("year 0", page(**{"from": "0000-01-01T00:00:00+00:00"}), 400, "BAD_USER_INPUT"),
    Malformed(
        "year 1 at +14:00, before UTC begins",
        page(**{"from": "0001-01-01T00:00:00+14:00", "to": "0001-01-02T00:00:00+14:00"}),
        400,
        "BAD_USER_INPUT",
    ),
    Malformed(
        "year 9999 at -14:00, after UTC ends",
        page(**{"from": "9999-12-31T00:00:00-14:00", "to": "9999-12-31T23:00:00-14:00"}),
        400,
        "BAD_USER_INPUT",
    ),
    Malformed("a date given a number", page(**{"from": 1764547200}), 400, "BAD_USER_INPUT", 1764547200),
    Malformed("an empty date", page(**{"from": ""}), 400, "BAD_USER_INPUT"),
    Malformed(
        "birth date of February 30",
        booking(newPatient={"firstName": "A", "lastName": "B", "gender": "FEMALE", "birthDate": "1990-02-30"}),
        400,
        "BAD_USER_INPUT",
        "1990-02-30",
    ),
    # Text no column can store
    Malformed("U+0000 in a variable", page(p="prc_\u0000"), 400, "BAD_USER_INPUT", "\u0000"),
    Malformed("U+0000 in a cursor", page(after="a\u0000b"), 400, "BAD_USER_INPUT", "\u0000"),
    Malformed(
        "U+0000 escaped in a GraphQL literal",
        post(
            lambda world: {
                "query": 'mutation { cancelAppointment(appointmentId: "apt_\\u0000") { __typename } }'
            }
        ),
        400,
        "BAD_USER_INPUT",
        "\u0000",
    ),
    Malformed(
        "U+0000 in the operationName",
        post({"query": "query A { viewer { name } }", "operationName": "A\u0000"}),
        400,
        "BAD_USER_INPUT",
        "\u0000",
    ),
    Malformed(
        "a lone surrogate in a variable",
        raw(
            lambda world: (
                json.dumps({"query": CANCEL, "variables": {"id": "apt_X"}}).replace("apt_X", "apt_\\ud800").encode()
            )
        ),
        400,
        "BAD_USER_INPUT",
        "\ud800",
    ),
    Malformed(
        "a lone surrogate in the query text",
        raw(b'{"query": "{ viewer { name } } # \\udfff"}'),
        400,
        "BAD_USER_INPUT",
        "\udfff",
    ),
    # Forged or truncated cursors and ids
    Malformed("forged cursor", page(after="eyJhIjoxfQ.AAAAAAAAAAAAAAAAAAAAAA"), 200, "BAD_USER_INPUT", "eyJhIjoxfQ"),
    Malformed("cursor not base64", page(after="!!é!!"), 200, "BAD_USER_INPUT", "!!é!!"),
    Malformed("truncated cursor", with_cursor(lambda c: c[: len(c) // 2]), 200, "BAD_USER_INPUT"),
    Malformed("cursor without its last 16 bytes", with_cursor(lambda c: c[:-22]), 200, "BAD_USER_INPUT"),
    Malformed("cursor of 10,000 characters", page(after="A" * 10_000), 200, "BAD_USER_INPUT", "A" * 10_000),
    Malformed("truncated practice id", page(p="prc_abc"), 200, "BAD_USER_INPUT", "prc_abc"),
    Malformed(
        "appointment id where a practice id goes",
        post(lambda world: {"query": PAGE, "variables": {**valid_page(world), "p": world.appointments["A"][0]}}),
        200,
        "BAD_USER_INPUT",
    ),
    Malformed(
        "truncated appointment id to cancel",
        post(lambda world: {"query": CANCEL, "variables": {"id": world.appointments["A"][0][:-1]}}),
        200,
        "NOT_FOUND",
    ),
    Malformed(
        "practice id to cancel",
        post(lambda world: {"query": CANCEL, "variables": {"id": world.practice_id("A")}}),
        200,
        "NOT_FOUND",
    ),
    Malformed(
        "SQL in an id to cancel",
        post({"query": CANCEL, "variables": {"id": "apt_' OR 1=1 --"}}),
        200,
        "BAD_USER_INPUT",
        "apt_' OR 1=1 --",
    ),  # spaces are no id's characters (@constraint)
    Malformed("an id longer than any id", page(p="prc_" + "a" * 200), 200, "BAD_USER_INPUT", "prc_" + "a" * 200),
    Malformed(
        "a line break in an idempotency key",
        booking(patientId=lambda world: world.patients["A"][0], idempotencyKey="sync\n42"),
        200,
        "BAD_USER_INPUT",
        "sync\n42",
    ),
    # Methods
    Malformed(
        "GET with a mutation",
        lambda api, world: _get({"query": CANCEL, "variables": json.dumps({"id": "apt_x"})}),
        405,
        "BAD_USER_INPUT",
        "apt_x",
    ),
    Malformed(
        "GET with variables that are not JSON",
        lambda api, world: _get({"query": "{ viewer { name } }", "variables": "{"}),
        400,
        "BAD_USER_INPUT",
    ),
    Malformed("PUT", lambda api, world: _method("PUT"), 405, "BAD_USER_INPUT"),
    Malformed("DELETE", lambda api, world: _method("DELETE"), 405, "BAD_USER_INPUT"),
]


async def _get(params: dict[str, str]) -> dict[str, Any]:
    return {"method": "GET", "params": params}


async def _get_pairs(params: list[tuple[str, str]]) -> dict[str, Any]:
    return {"method": "GET", "params": params}


async def _method(method: str) -> dict[str, Any]:
    return {"method": method, "json": {"query": "{ viewer { name } }"}}


def _values(parameters: object) -> Iterator[object]:
    if isinstance(parameters, dict):
        yield from _values(list(parameters.values()))
    elif isinstance(parameters, (list, tuple)):
        for item in parameters:
            yield from _values(item)
    else:
        yield parameters


def _carries(value: object, bad: object) -> bool:
    if isinstance(value, str) and isinstance(bad, str):
        return bad in value
    return value == bad and type(value) is type(bad)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_malformed_request_is_refused_with_a_structured_error(api, world, case: Malformed):
    statements: list[tuple[str, object]] = []
    engine = api.http._transport.app.state.engine.sync_engine  # type: ignore[attr-defined]
    request = await case.request(api, world)
    listener = lambda _c, _cur, statement, parameters, *_: statements.append((statement, parameters))  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        headers = {
            "Authorization": f"Bearer {world.keys['full']}",
            "Accept": GRAPHQL_RESPONSE,
            **request.pop("headers", {}),
        }
        response = await api.http.request(url="/graphql", headers=headers, **request)
    finally:
        event.remove(engine, "before_cursor_execute", listener)

    assert response.status_code == case.status, response.text
    if case.status != 405 or case.name.startswith("GET"):  # starlette's own 405 answers in application/json
        assert response.headers["content-type"] == GRAPHQL_RESPONSE, response.text
        assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["errors"] and all(error["extensions"]["code"] for error in body["errors"]), body
    assert {error["extensions"]["code"] for error in body["errors"]} == {case.code}, body
    assert "Traceback" not in response.text and 'File "' not in response.text
    if case.status == 200:  # a field error: the operation ran, its root field is null
        assert body["data"] is None, body
    else:  # a request error: nothing ran, so no `data` entry at all
        assert "data" not in body, body
    if case.status != 405:  # a method /graphql does not route never reaches its handler, nor the ledger
        assert any("access_records" in statement for statement, _ in statements), "the refusal is recorded"
    for statement, parameters in statements:
        assert not BUSINESS_TABLES.search(statement), statement
        if case.bad is not None:
            assert not any(_carries(value, case.bad) for value in _values(parameters)), (statement, parameters)


@pytest.mark.parametrize("name_length", [100, 101, 500])
async def test_long_operation_names_are_served_and_recorded(api, world, sync_engine, name_length):
    """A valid GraphQL name longer than the ledger's column is recorded cut, not refused by the database."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from api.data.models import AccessRecord

    name = "Q" * name_length
    response = await api.query(world.keys["full"], f"query {name} {{ viewer {{ name }} }}", operationName=name)
    assert response.status == 200 and response.data == {"viewer": {"name": "full"}}
    with Session(sync_engine) as session:
        recorded = session.scalars(select(AccessRecord.operation_name)).all()
    assert recorded == [name[:100]]


async def test_an_invalid_value_is_not_echoed_whole(api, world):
    """graphql-core's message quotes the value it refuses: a 60,000-character DateTime is cut."""
    query = (
        'query($from: DateTime!) { appointments(practiceId: "prc_x", from: $from, to: $from, first: 1) '
        "{ edges { cursor } } }"
    )
    response = await api.query(world.keys["full"], query, {"from": "9" * 60_000})
    assert response.codes == {"BAD_USER_INPUT"}
    assert all(len(error["message"]) <= 1010 for error in response.errors), len(response.errors[0]["message"])
