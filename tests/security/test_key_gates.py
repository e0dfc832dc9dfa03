"""Each key's share of a worker (api/protection/key_gates.py): a bounded number of its requests run at once,
a key told to come back later is refused before the database, and neither can be used by one
partner against another."""

from __future__ import annotations

import asyncio

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from api.data.models import AccessRecord
from api.protection.key_gates import QUEUE_FACTOR, CredentialGates
from tests.security.test_budgets import PRICED, variables


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


async def test_a_key_whose_budget_is_spent_is_refused_before_the_database_and_recorded(make_api, world, sync_engine):
    api = make_api(budget_capacity=600, budget_refill_per_second=1)
    retry_after = int((await spend_the_budget(api, world)).headers["retry-after"])

    statements: list[str] = []
    engine = api.http._transport.app.state.engine.sync_engine  # type: ignore[attr-defined]
    listener = lambda _c, _cur, statement, *_: statements.append(statement)  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        again = await api.query(world.keys["full"], "{ viewer { name } }")  # even a cheap one, until Retry-After
    finally:
        event.remove(engine, "before_cursor_execute", listener)
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


async def test_spellings_of_one_authorization_header_share_one_gate(make_api, world):
    """`bearer  K` is the same key as `Bearer K` to authentication, so to the gate as well."""
    api = make_api(budget_capacity=600, budget_refill_per_second=1)
    key = world.keys["full"]
    await spend_the_budget(api, world)
    for header in (f"bearer {key}", f"BEARER   {key}", f"Bearer {key}  "):
        again = await api.http.post(
            "/graphql", json={"query": "{ viewer { name } }"}, headers={"Authorization": header}
        )
        assert again.status_code == 429 and again.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED", header
