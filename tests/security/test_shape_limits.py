"""Shape limits at, under and over their boundary, through literals, variables, fragments and aliases."""

import json
import threading

import pytest
from graphql import parse, validate

from api.protection.shape_limits import limit_rules
from api.schema import schema
from api.settings import Settings
from tests.world import window_args

PAGE = """query($p: ID!, $from: DateTime!, $to: DateTime!, $n: Int!) {
  appointments(practiceId: $p, from: $from, to: $to, first: $n) { edges { node { id } } } }"""


def limit_of(response) -> set:
    return {e["extensions"].get("limit") for e in response.errors}


@pytest.mark.parametrize(("depth", "refused"), [(3, False), (4, True)])
async def test_depth_limit(make_api, world, depth, refused):
    api = make_api(max_query_depth=3)
    # viewer(1) > grants(2) > id(3): depth 3; the fragment adds a level through practice.
    queries = {
        3: "{ viewer { grants { id } } }",
        4: "fragment P on Practice { practitioners(first: 1) { edges { node { id } } } } { practices(first: 1) { "
        "edges { node { ...P } } } }",
    }
    response = await api.query(world.keys["full"], queries[depth])
    assert (response.status == 400) is refused
    assert ("depth" in limit_of(response)) is refused


@pytest.mark.parametrize(("aliases", "refused"), [(20, False), (21, True)])
async def test_alias_limit_counts_aliases_in_fragments_too(api, world, aliases, refused):
    fields = " ".join(f"a{i}: id" for i in range(aliases - 1))
    query = f"fragment V on Viewer {{ last: name }} {{ viewer {{ {fields} ...V }} }}"
    response = await api.query(world.keys["full"], query)
    assert (response.status == 400) is refused
    if refused:
        assert response.codes == {"BAD_USER_INPUT"} and limit_of(response) == {"aliases"}


def repeated(text: str, times: int) -> str:
    return " ".join([text] * times)


# Each merges 21 fields into one response field, which the default (20) refuses: repeated in place,
# through distinct fragments, through inline fragments, and nested (20 `grants` in each of 2 `viewer`).
MERGED_PAST_THE_LIMIT = {
    "in place": "{ " + repeated("viewer { grants { id } }", 21) + " }",
    "fragments": " ".join(f"fragment F{i} on Query {{ viewer {{ name }} }}" for i in range(21))
    + " { " + " ".join(f"...F{i}" for i in range(21)) + " }",
    "inline fragments": "{ " + repeated("... { rateLimit { maxQueryCost } }", 21) + " }",
    "nested": "{ viewer { grants { id } } " + repeated("viewer { " + repeated("grants { id }", 10) + " }", 2) + " }",
    # Inline fragments are no fields: counted as selections, 360 of them made the walk stop short (past 500
    # selections, where max_selections refuses) and let 240 fields merged into `viewer` through.
    "padded with nested inline fragments": "{ " + repeated("viewer { id }", 240)
    + repeated("... { " * 90 + "__typename " + "} " * 90, 4) + " }",
}


@pytest.mark.parametrize("document", MERGED_PAST_THE_LIMIT.values(), ids=MERGED_PAST_THE_LIMIT.keys())
async def test_fields_merged_into_one_response_field_are_bounded(api, world, document):
    """Every two fields merged into one response field are compared by the specification's validation:
    250 of them in 3 KB held a worker for half a second, for free."""
    response = await api.query(world.keys["full"], document)
    assert response.status == 400 and limit_of(response) == {"fieldRepeats"}, response.body
    assert response.errors[0]["extensions"]["maximum"] == 20


FRAGMENT_CYCLES = {
    "two fragments, no field": "{ viewer { ...A } } fragment A on Viewer { ...B } fragment B on Viewer { ...A }",
    "one fragment, four times itself": "{ viewer { ...A } } fragment A on Viewer { ...A ...A ...A ...A }",
}


@pytest.mark.parametrize("document", FRAGMENT_CYCLES.values(), ids=FRAGMENT_CYCLES.keys())
async def test_fragment_cycles_are_refused_at_once(api, world, document):
    """The rule counting merged fields followed spreads without counting them: 79 bytes of cycle held a
    worker at full CPU (or grew it by 50 MB/s) until the watchdog killed it, with its other requests."""
    rules = limit_rules(Settings()).shape
    # In a daemon thread: should a rule loop again, the test fails rather than hangs the suite.
    checking = threading.Thread(target=validate, args=(schema._schema, parse(document), rules), daemon=True)
    checking.start()
    checking.join(timeout=10)
    assert not checking.is_alive(), "the shape rules did not return"
    response = await api.query(world.keys["full"], document)
    assert response.status == 400 and response.codes == {"BAD_USER_INPUT"}, response.body
    assert "Cannot spread fragment 'A' within itself" in response.errors[0]["message"]


async def test_a_field_repeated_in_each_of_twenty_fragments_is_served(api, world):
    """As generated clients write: each fragment of one object selects its `id`."""
    fragments = " ".join(f"fragment V{i} on Viewer {{ id }}" for i in range(19))
    query = fragments + " { viewer { id " + " ".join(f"...V{i}" for i in range(19)) + " } }"
    response = await api.query(world.keys["full"], query)
    assert response.status == 200 and response.errors == [], response.body


def one_field_fragments(count: int) -> str:
    """One selection set spreading `count` one-field fragments: validation compares them pairwise."""
    fields = ["name", "keyPrefix", "keyMode", "id"]
    fragments = " ".join(f"fragment F{i} on Viewer {{ f{i}: {fields[i % 4]} }}" for i in range(count))
    return "{ viewer { " + " ".join(f"...F{i}" for i in range(count)) + " } } " + fragments


@pytest.mark.parametrize(("fragments", "refused"), [(20, False), (21, True), (300, True)])
async def test_fragments_per_document_limit(make_api, world, fragments, refused):
    api = make_api(max_fragments=20, max_aliases=400, max_selections=400, max_tokens=5000)
    response = await api.query(world.keys["full"], one_field_fragments(fragments))
    assert (limit_of(response) == {"fragments"}) == refused, response.body
    assert refused or response.data["viewer"]["f16"] == "full"


@pytest.mark.parametrize(("directives", "refused"), [(1, False), (2, True)])
async def test_directives_per_field_limit(make_api, world, directives, refused):
    api = make_api(max_directives_per_field=1)
    applied = " ".join(["@include(if: true)", "@skip(if: false)"][:directives])
    response = await api.query(world.keys["full"], f"{{ viewer {{ name {applied} }} }}")
    assert (response.status == 400) is refused
    if refused:
        assert limit_of(response) == {"directives"}


async def test_token_limit(make_api, world):
    api = make_api(max_tokens=50)
    small = await api.query(world.keys["full"], "{ viewer { name } }")
    big = await api.query(world.keys["full"], "{ viewer { " + "name " * 60 + "} }")
    assert small.status == 200
    assert big.status == 400 and big.codes == {"BAD_USER_INPUT"}


async def test_body_size_limit(make_api, world):
    api = make_api(max_body_bytes=1000)
    response = await api.query(world.keys["full"], "{ viewer { name } }", {"padding": "x" * 1000})
    assert response.status == 413 and response.codes == {"BAD_USER_INPUT"}


async def test_batched_operations_are_refused(api, world):
    batch = [{"query": "{ viewer { name } }"}, {"query": "{ viewer { id } }"}]
    response = await api.http.post(
        "/graphql",
        content=json.dumps(batch),
        headers={"Authorization": f"Bearer {world.keys['full']}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


@pytest.mark.parametrize(
    ("first", "ok"), [(1, True), (100, True), (0, False), (-1, False), (101, False), (2**31 - 1, False)]
)
async def test_page_size_bounds_hold_for_variables(api, world, first, ok):
    variables = {"p": world.practice_id("A"), **window_args(), "n": first}
    response = await api.query(world.keys["full"], PAGE, variables)
    assert (response.errors == []) is ok
    if not ok:
        # refused by the cost analysis (a request error, 400) or by the resolver (a field error, data null: 200)
        assert response.codes <= {"BAD_USER_INPUT", "COST_LIMIT_EXCEEDED"} and response.status in (200, 400)
        assert response.data is None


@pytest.mark.parametrize("first", ["0", "101", "-5"])
async def test_page_size_bounds_hold_for_literals(api, world, first):
    query = PAGE.replace("first: $n", f"first: {first}").replace(", $n: Int!", "")
    response = await api.query(world.keys["full"], query, {"p": world.practice_id("A"), **window_args()})
    assert response.status == 200 and response.data is None  # the resolver's refusal: a field error
    assert response.codes == {"BAD_USER_INPUT"}


async def test_page_size_limit_holds_for_nested_connections(api, world):
    response = await api.query(
        world.keys["full"],
        "{ practices(first: 1) { edges { node { practitioners(first: 0) { edges { node { id } } } } } } }",
    )
    assert response.codes == {"BAD_USER_INPUT"}


@pytest.mark.parametrize(("days", "ok"), [(31, True), (31.01, False), (-1, False)])
async def test_date_window_is_bounded(api, world, days, ok):
    from datetime import datetime, timedelta

    start = datetime.fromisoformat(window_args()["from"])
    variables = {
        "p": world.practice_id("A"),
        "from": start.isoformat(),
        "to": (start + timedelta(days=days)).isoformat(),
        "n": 10,
    }
    response = await api.query(world.keys["full"], PAGE, variables)
    assert (response.errors == []) is ok
    if not ok:
        assert response.codes == {"BAD_USER_INPUT"} and response.status == 200 and response.data is None


async def test_naive_datetimes_are_refused(api, world):
    variables = {"p": world.practice_id("A"), "from": "2026-12-01T08:00:00", "to": "2026-12-02T08:00:00", "n": 10}
    response = await api.query(world.keys["full"], PAGE, variables)
    assert response.codes == {"BAD_USER_INPUT"}


async def test_no_field_suggestions(api, world):
    response = await api.query(world.keys["full"], "{ viewr { name } apointments }")
    assert response.status == 400
    assert all("Did you mean" not in e["message"] for e in response.errors)


async def test_nodes_list_is_bounded(api, world):
    response = await api.query(
        world.keys["full"], "query($ids: [ID!]!) { nodes(ids: $ids) { id } }", {"ids": ["x"] * 101}
    )
    assert response.codes <= {"BAD_USER_INPUT", "COST_LIMIT_EXCEEDED"} and response.data is None
