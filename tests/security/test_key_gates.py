"""Each partner's share of a worker (api/protection/key_gates.py): a bounded number of its requests run at once,
across all its keys and within its share of the connection pool; while its budget refills, what it cannot pay
is refused before the database; and none of it can be used by one partner against another."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.data.database import pool_capacity
from api.data.models import AccessRecord, KeyMode
from api.http.app import create_app
from api.operators import accounts as operators
from api.protection.key_gates import QUEUE_FACTOR, CredentialGates, partner_limit
from api.settings import Settings
from tests.security.test_budgets import PRICED, variables
from tests.statements import statements_sent


async def spend_the_budget(api, world):
    """Priced pages with the "full" key until its budget refuses one: that refusal."""
    for _ in range(8):
        response = await api.query(world.keys["full"], PRICED, variables(world, 50))
        if response.status == 429:
            return response
    raise AssertionError("the budget was never spent")


async def test_a_key_runs_at_most_its_limit_at_once_and_is_refused_past_its_queue():
    gates, running, most, refused = CredentialGates(limit=2), 0, 0, 0
    release, settled = asyncio.Event(), asyncio.Event()

    def check() -> None:
        # The flood's 2 and the other key's request run, and the 3 past the queue are refused.
        if running >= 3 and refused >= 3:
            settled.set()

    async def request(credential: str) -> bool:
        nonlocal running, most, refused
        async with gates.turn(credential) as refusal:
            if refusal is not None:
                refused += 1
                check()
                return False
            running += 1
            most = max(most, running)
            check()
            await release.wait()
            running -= 1
            return True

    flood = [asyncio.create_task(request("Bearer flood")) for _ in range((QUEUE_FACTOR + 1) * 2 + 3)]
    other = asyncio.create_task(request("Bearer other"))
    await asyncio.wait_for(settled.wait(), timeout=10)  # a bound for a broken gate, not a timing assertion
    assert running == 3 and refused == 3  # the other key's request did not wait behind the flood
    release.set()
    outcomes = await asyncio.gather(*flood)
    assert await other and most <= 3
    assert outcomes.count(False) == 3  # the 18 after the 2 running wait; the 3 beyond are refused
    assert gates._gates == {}  # idle gates are dropped


def second_key(sync_engine, partner: str = "full") -> str:
    """Another live key of the same partner."""
    with Session(sync_engine) as session:
        token = operators.issue_partner_key(session, partner, label="second", mode=KeyMode.OPEN).token
        session.commit()
    return token


def counting_statements(api):
    """A context in which every SQL statement the app sends is listed."""
    return statements_sent(api.http._transport.app)  # type: ignore[attr-defined]


async def test_a_spent_budget_refuses_what_it_cannot_pay_before_the_database_and_records_it(
    make_api, world, sync_engine
):
    api = make_api(budget_capacity=600, budget_refill_per_second=1)
    retry_after = int((await spend_the_budget(api, world)).headers["retry-after"])

    with counting_statements(api) as statements:
        again = await api.query(world.keys["full"], PRICED, variables(world, 50))  # 550 points: more than is left
    assert again.status == 429 and again.codes == {"RATE_LIMITED"}
    assert 1 <= int(again.headers["retry-after"]) <= retry_after
    # as the budget's refusal
    assert again.body["errors"][0]["extensions"]["retryAfter"] == int(again.headers["retry-after"])
    assert statements and all("access_records" in s for s in statements), statements  # only its ledger row
    with Session(sync_engine) as session:
        last = session.scalars(select(AccessRecord).order_by(AccessRecord.id.desc())).first()
    assert (
        last is not None
        and last.partner_id is not None
        and last.error_code == "RATE_LIMITED"
        and last.http_status == 429
    )

    # Other partners, and a wrong secret under the same public prefix, are not affected.
    assert (await api.query(world.keys["no-contact"], "{ viewer { name } }")).data == {"viewer": {"name": "no-contact"}}
    prefix = "_".join(world.keys["full"].split("_")[:2])  # pak_<prefix>
    assert (await api.query(prefix + "_" + "x" * 43, "{ viewer { name } }")).status == 401


async def test_a_cooling_budget_still_serves_what_it_can_pay(make_api, world):
    api = make_api(budget_capacity=600, budget_refill_per_second=1)
    await spend_the_budget(api, world)
    cheap = await api.query(world.keys["full"], PRICED, variables(world, 1))  # 11 points: the bucket holds them
    assert cheap.status == 200 and cheap.errors == [], cheap.body
    assert (await api.query(world.keys["full"], PRICED, variables(world, 50))).status == 429


async def test_every_key_of_a_partner_cools_down_with_its_budget(make_api, world, sync_engine):
    api = make_api(budget_capacity=600, budget_refill_per_second=1)
    other_key = second_key(sync_engine)
    assert (await api.query(other_key, "{ viewer { name } }")).status == 200  # the gate learns its partner
    await spend_the_budget(api, world)
    with counting_statements(api) as statements:
        again = await api.query(other_key, PRICED, variables(world, 50))
    assert again.status == 429 and again.codes == {"RATE_LIMITED"}
    assert all("access_records" in s for s in statements), statements


async def test_a_partners_keys_share_its_places():
    """Four keys of one partner, learned, run at most N requests at once between them."""
    from api.identity.authentication import Principal

    gates, running, most = CredentialGates(limit=2), 0, 0
    partner = Principal(7, "ptn_x", "x", 1, "p")
    keys = [f"key-{i}" for i in range(4)]
    for key in keys:
        gates.learn(key, partner)
    release, two_running = asyncio.Event(), asyncio.Event()

    async def request(credential: str) -> None:
        nonlocal running, most
        async with gates.turn(credential) as refusal:
            assert refusal is None
            running += 1
            most = max(most, running)
            if running == 2:
                two_running.set()
            await release.wait()
            running -= 1

    tasks = [asyncio.create_task(request(key)) for key in keys for _ in range(2)]
    await asyncio.wait_for(two_running.wait(), timeout=10)  # a bound for a broken gate, not a timing assertion
    await asyncio.sleep(0)  # the others had their chance to enter
    assert running == 2
    release.set()
    await asyncio.gather(*tasks)
    assert most == 2 and gates._gates == {}


@pytest.mark.parametrize(
    ("per_partner", "share", "pool", "expected"),
    [(4, 0.4, 15, 4), (8, 0.4, 15, 6), (4, 0.1, 5, 1), (4, 0.5, None, 4)],
)
def test_a_partner_holds_at_most_its_share_of_the_pool(per_partner, share, pool, expected):
    assert partner_limit(per_partner, share, pool) == expected


async def test_the_gate_is_bounded_by_the_pool_share_in_the_app(database_url):
    app = create_app(Settings(database_url=database_url, secret_key="t", partner_pool_share=0.2))
    try:
        assert pool_capacity(app.state.engine) == 15 and app.state.gates.limit == 3  # 5 + 10 connections
    finally:
        await app.state.engine.dispose()


async def test_spellings_of_one_authorization_header_share_one_gate(make_api, world):
    """`bearer  K` is the same key as `Bearer K` to authentication, so to the gate as well."""
    api = make_api(budget_capacity=600, budget_refill_per_second=1)
    key = world.keys["full"]
    await spend_the_budget(api, world)
    for header in (f"bearer {key}", f"BEARER   {key}", f"Bearer {key}  "):
        again = await api.http.post(
            "/graphql",
            json={"query": PRICED, "variables": variables(world, 50)},
            headers={"Authorization": header},
        )
        assert again.status_code == 429 and again.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED", header
