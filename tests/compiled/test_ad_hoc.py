"""Open keys' texts through compiled plans: a text the general path refuses is refused alike, under the
schema's own limits, and an accepted one runs its plan."""

from __future__ import annotations

import pytest

from api.http.app import create_app
from api.schema import build_schema
from api.settings import Settings
from tests.client import ApiClient
from tests.world import window_args

NODE = "edges { node { id patient { id } } }"
PAGE = "appointments(practiceId: $p, from: $from, to: $to, first: 2)"
HEADER = "query Page($p: ID!, $from: DateTime!, $to: DateTime!)"
HOSTILE = {
    "too many aliases": HEADER + " { " + " ".join(f"a{i}: {PAGE} {{ {NODE} }}" for i in range(25)) + " }",
    "too many tokens": HEADER + " { " + PAGE + " { " + "edges { cursor } " * 700 + " } }",
    "too deep": HEADER + " { " + PAGE + " { edges { node { practice { " + "__typename " * 2 + "} } } } }" + "}" * 3,
    "unknown field": HEADER + " { " + PAGE + " { edges { node { secret } } } }",
    "introspection": "{ __schema { types { name } } }",
    "two anonymous operations": "{ viewer { name } } { viewer { name } }",
}


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
async def test_a_text_the_general_path_refuses_is_refused_alike(make_api, world, plan_runs, text):
    variables = {"p": world.practice_id("A"), **window_args()}
    answers = []
    for compiled in (True, False):
        # the budget full again by the second run: its throttle status is the first's (introspection is charged)
        api = make_api(compiled_plans=compiled, budget_refill_per_second=10**6)
        response = await api.query(world.keys["full"], text, variables)
        answers.append((response.status, response.body))
    assert answers[0] == answers[1]
    assert not plan_runs["plan"]  # no plan ran


async def test_a_schema_with_stricter_limits_than_the_settings_keeps_them(database_url, world, plan_runs):
    """The plans of texts pass a text under the schema's limits, not the app's settings' (a schema may
    be built with others)."""
    strict = build_schema(Settings(max_aliases=1))
    app = create_app(Settings(database_url=database_url, secret_key="test-secret"), schema=strict)
    api = ApiClient(app)
    text = HEADER + f" {{ a: {PAGE} {{ {NODE} }} b: {PAGE} {{ {NODE} }} }}"
    try:
        response = await api.query(world.keys["full"], text, {"p": world.practice_id("A"), **window_args()})
    finally:
        await api.close()
        await app.state.engine.dispose()
    assert response.codes == {"BAD_USER_INPUT"} and not plan_runs["plan"]


async def test_an_accepted_text_runs_its_plan_and_is_repriced_with_its_variables(make_api, world, plan_runs):
    api = make_api(compiled_plans=True)
    text = "query Page($p: ID!, $from: DateTime!, $to: DateTime!, $n: Int!) { appointments(practiceId: $p, " \
        "from: $from, to: $to, first: $n) { " + NODE + " } }"
    costs = []
    for n in (2, 5):
        response = await api.query(world.keys["full"], text, {"p": world.practice_id("A"), **window_args(), "n": n})
        assert response.errors == []
        costs.append(response.body["extensions"]["cost"]["requestedQueryCost"])
    assert plan_runs["plan"] == plan_runs["page"] == 2 and costs[1] > costs[0]


@pytest.mark.parametrize("practice_id", ["prc_" + "a" * 300, "prc_not an id", "apt_aaaaaaaaaaaaaaaaaaaaaaaaaa"])
async def test_an_argument_outside_its_constraint_is_refused_alike(make_api, world, plan_runs, practice_id):
    """The page plan checks string arguments as the field's ValidatedInput does, and leaves the refusal
    to the resolver: the same answer with plans on and off."""
    text = HEADER + " { " + PAGE + " { " + NODE + " } }"
    answers = []
    for compiled in (True, False):
        response = await make_api(compiled_plans=compiled).query(
            world.keys["full"], text, {"p": practice_id, **window_args()}
        )
        answers.append((response.status, response.body))
    assert answers[0] == answers[1] and "BAD_USER_INPUT" in str(answers[0])
    assert plan_runs["plan"] == 1 and not plan_runs["page"]  # the plan ran, and declined the page
