"""A response's errors come in the order of the fields they concern, whichever executor ran."""

from __future__ import annotations

import pytest
from graphql import GraphQLError
from hypothesis import given
from hypothesis import strategies as st

from api.http.error_order import in_response_order
from tests.world import window_args

DATA = {
    "appointments": {
        "edges": [
            {"node": {"id": "a0", "reason": None, "patient": {"id": "p0", "phone": None}}},
            {"node": {"id": "a1", "reason": None, "patient": None}},
        ],
        "pageInfo": {"hasNextPage": False},
    }
}
# Every field path of DATA, in the response's order.
IN_ORDER = [
    ["appointments", "edges", 0, "node", "reason"],
    ["appointments", "edges", 0, "node", "patient", "phone"],
    ["appointments", "edges", 1, "node", "reason"],
    ["appointments", "edges", 1, "node", "patient"],
    ["appointments", "edges", 1, "node", "patient", "firstName"],  # below a nulled parent
    ["appointments", "pageInfo"],
]


@given(st.permutations(range(len(IN_ORDER))), st.integers(0, 2))
def test_errors_are_sorted_by_their_place_in_the_response(order, request_errors):
    errors = [GraphQLError(f"e{i}", path=IN_ORDER[i]) for i in order]
    errors += [GraphQLError(f"request {i}") for i in range(request_errors)]  # no path: about the request
    sorted_errors = in_response_order(errors, DATA)
    assert [e.message for e in sorted_errors] == [f"request {i}" for i in range(request_errors)] + [
        f"e{i}" for i in range(len(IN_ORDER))
    ]


def test_errors_of_the_same_place_keep_their_order_and_a_null_data_is_no_trouble():
    errors = [GraphQLError(m, path=["appointments"]) for m in ("first", "second")]
    assert [e.message for e in in_response_order(errors, None)] == ["first", "second"]
    assert [e.message for e in in_response_order(errors[::-1], DATA)] == ["second", "first"]


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "general-executor"])
async def test_a_page_lists_its_forbidden_fields_edge_by_edge(make_api, world, compiled):
    """The appointments' reasons (forbidden without appointments:reason) and their patients' phones
    (without patients:contact): the errors read as the page does, top to bottom (graphql-core's
    executor raises all the reasons first, then the patients' fields, as their loader returns)."""
    api = make_api(compiled_plans=compiled)
    query = """query($p: ID!, $from: DateTime!, $to: DateTime!) {
      appointments(practiceId: $p, from: $from, to: $to, first: 3) {
        edges { node { reason patient { phone } } } } }"""
    response = await api.query(world.keys["reader"], query, {"p": world.practice_id("A"), **window_args()})
    paths = [error["path"] for error in response.errors]
    assert len(paths) >= 4  # two edges at least, each with both errors
    assert paths == sorted(paths, key=lambda path: (path[2], len(path))), paths
