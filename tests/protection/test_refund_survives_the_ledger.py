"""The refund has the charge's own guarantee (api/http/pipeline.py `record`): when the ledger's transaction
fails, no data is sent and every point charged for the request is given back, in a transaction of its own."""

from __future__ import annotations

from tests.security.test_budgets import PRICED, variables


async def budget_left(api, world) -> int:
    """The budget before this reading, which costs its own point."""
    reading = await api.query(world.keys["full"], "{ rateLimit { currentlyAvailable } }")
    return reading.data["rateLimit"]["currentlyAvailable"] + reading.body["extensions"]["cost"]["actualQueryCost"]


async def test_no_point_is_lost_when_the_ledger_write_fails(make_api, world, monkeypatch):
    api = make_api(budget_capacity=2000, budget_refill_per_second=0.001)
    writes = []

    async def broken(*_args, **_kwargs):
        writes.append(1)
        raise RuntimeError("disk full")

    monkeypatch.setattr("api.ledger.access.write", broken)
    response = await api.query(world.keys["full"], PRICED, variables(world, 50))  # charged 550, spends 66
    assert response.status == 503 and response.data is None and writes
    monkeypatch.undo()
    assert await budget_left(api, world) == 2000  # neither the 484 unspent nor the 66 for data never sent are lost


async def test_a_served_request_still_pays_what_it_spent(make_api, world):
    api = make_api(budget_capacity=2000, budget_refill_per_second=0.001)
    response = await api.query(world.keys["full"], PRICED, variables(world, 50))
    spent = response.body["extensions"]["cost"]["actualQueryCost"]
    assert response.status == 200 and spent > 0
    assert await budget_left(api, world) == 2000 - spent
