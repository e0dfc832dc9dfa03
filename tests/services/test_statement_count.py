"""Nested objects are loaded in batches: the SQL statements of a request do not grow with the page."""

import pytest
from sqlalchemy import event

from tests.statements import statements_sent
from tests.world import build_world, window_args

PAGE = """query($p: ID!, $from: DateTime!, $to: DateTime!, $n: Int!) {
  appointments(practiceId: $p, from: $from, to: $to, first: $n) {
    edges { node { id reason patient { id firstName phone } practitioner { id lastName } practice { id name } } } } }"""


@pytest.fixture
def world(sync_engine):
    return build_world(sync_engine, appointments_per_practice=60)


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "general-executor"])
async def test_statements_per_request_do_not_grow_with_page_size(make_api, world, compiled):
    api = make_api(compiled_plans=compiled)
    statements: list[str] = []
    event.listen(
        api.http._transport.app.state.engine.sync_engine, "before_cursor_execute", lambda *a: statements.append(a[2])
    )

    async def count(n: int) -> int:
        statements.clear()
        response = await api.query(world.keys["full"], PAGE, {"p": world.practice_id("A"), **window_args(), "n": n})
        assert len(response.data["appointments"]["edges"]) == n and response.errors == []
        return len(statements)

    await count(50)  # first use: the budget row, the key's last use, the patients' first disclosure
    assert await count(5) == await count(50)


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "general-executor"])
async def test_a_warm_page_reads_each_table_it_shows_once_and_nothing_else(make_api, world, compiled):
    """The practice check rides in the page query, known patients in the patients query, grants and
    the key in caches: what is left is the budget, three reads, the ledger and, on SQLite, the key
    cache's version (PostgreSQL notifies its listener, started here as the lifespan does). Compiled,
    the page is one read (api/compiled/page_run.py)."""
    api = make_api(compiled_plans=compiled)
    app = api.http._transport.app
    engine = app.state.engine
    await app.state.principals.start()
    if engine.dialect.name == "postgresql":
        await app.state.principals.freshness.wait_listening(10)
    statements: list[str] = []
    event.listen(engine.sync_engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    variables = {"p": world.practice_id("A"), **window_args(), "n": 50}
    for _ in range(2):
        statements.clear()
        assert (await api.query(world.keys["full"], PAGE, variables)).errors == []
    shapes = [
        " ".join(s.split()[:2]) if s.startswith(("UPDATE", "INSERT", "WITH")) else s.split(".")[0] for s in statements
    ]
    # The access record and its disclosures: one statement on PostgreSQL (its plan cached: api/ledger/access.py),
    # two on SQLite.
    ledger = (
        ["SET LOCAL plan_cache_mode = auto", "WITH access"]
        if engine.dialect.name == "postgresql"
        else ["INSERT INTO", "INSERT INTO"]
    )
    key = [] if engine.dialect.name == "postgresql" else ["SELECT value FROM principal_versions WHERE id = 1"]
    await app.state.principals.stop()
    assert sorted(s for s in shapes if s != "UPDATE partner_budgets") == sorted(
        [
            *ledger,
            *key,
            "SELECT appointments",
            *([] if compiled else ["SELECT patients", "SELECT practice_memberships", "SELECT practices"]),
        ]
    ), statements
    assert 1 <= shapes.count("UPDATE partner_budgets") <= 2  # the charge, and a refund when fewer points were spent


async def test_nodes_read_their_ids_in_statements_that_do_not_grow_with_the_ids(make_api, world):
    """Each id was its own statement, and each patient its own admission by the distinct-patient
    budget: 100 ids cost 13 times a page's work for as many points (outside review, helper 53)."""
    api = make_api(budget_capacity=10**6)
    nodes = "query($ids: [ID!]!) { nodes(ids: $ids) { id ... on Patient { lastName } ... on Appointment { reason } } }"

    async def count(n: int) -> int:
        ids = [*world.patients["A"], *world.appointments["A"][:n], *world.practitioners["A"], "pat_missing"]
        with statements_sent(api.http._transport.app) as statements:
            response = await api.query(world.keys["full"], nodes, {"ids": ids})
        assert response.errors == [] and len([node for node in response.data["nodes"] if node]) == n + 4
        return len(statements)

    await count(2)  # first use: the budget row, the key's last use, the patients' admission
    assert await count(2) == await count(60)


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "general-executor"])
async def test_a_practice_s_practitioners_under_each_appointment_are_read_once(make_api, world, compiled):
    """Each appointment's practice ran the same query of its practitioners: 100 for a page (helper 53)."""
    api = make_api(compiled_plans=compiled)
    page = """query($p: ID!, $from: DateTime!, $to: DateTime!, $n: Int!) {
      appointments(practiceId: $p, from: $from, to: $to, first: $n) {
        edges { node { id practice { practitioners(first: 1) { edges { node { id } } } } } } } }"""

    async def count(n: int) -> int:
        with statements_sent(api.http._transport.app) as statements:
            response = await api.query(world.keys["full"], page, {"p": world.practice_id("A"), **window_args(), "n": n})
        edges = response.data["appointments"]["edges"]
        assert response.errors == [] and len(edges) == n
        assert {e["node"]["practice"]["practitioners"]["edges"][0]["node"]["id"] for e in edges} == {
            world.practitioners["A"][0]
        }
        return len(statements)

    await count(2)
    assert await count(2) == await count(50)
