"""The pipeline takes one of the worker's places (api/protection/fair_turns.py) for each request past the
address screen: its partner's once the credential is known, its address's before; a request waits while the
worker is full, and past its owner's queue it is refused (429, Retry-After) and recorded."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.data.models import AccessRecord
from api.protection import fair_turns


def recording_owners(api) -> list[Hashable]:
    turns = api.http._transport.app.state.turns  # type: ignore[attr-defined]
    owners: list[Hashable] = []
    taking = turns.turn

    def turn(owner: Hashable):
        owners.append(owner)
        return taking(owner)

    turns.turn = turn
    return owners


async def test_a_request_takes_its_partners_turn_once_its_key_is_known_and_its_addresss_before(make_api, world):
    api = make_api()
    owners = recording_owners(api)
    for _ in range(2):
        assert (await api.query(world.keys["full"], "{ viewer { name } }")).status == 200
    assert (await api.query("pak_000000000000_" + "x" * 43, "{ viewer { name } }")).status == 401
    partner = api.http._transport.app.state.gates.partner_of(f"{world.keys['full']}")  # type: ignore[attr-defined]
    assert partner is not None
    address = ("address", "127.0.0.1")
    assert owners == [address, ("partner", partner), address]


async def test_a_request_waits_while_the_worker_is_full(make_api, world):
    api = make_api(max_concurrent_requests_per_worker=1)
    turns = api.http._transport.app.state.turns  # type: ignore[attr-defined]
    async with turns.turn(("partner", -1)):  # another partner's request holds the only place
        waiting = asyncio.create_task(api.query(world.keys["full"], "{ viewer { name } }"))
        for _ in range(50):
            await asyncio.sleep(0)
        assert not waiting.done() and turns.running == 1 and turns._waiting
    assert (await waiting).data == {"viewer": {"name": "full"}}
    assert turns.running == 0 and not turns._waiting


async def test_past_its_queue_a_request_is_refused_with_retry_after_and_recorded(
    make_api, world, sync_engine, monkeypatch
):
    api = make_api(max_concurrent_requests_per_worker=1)
    turns = api.http._transport.app.state.turns  # type: ignore[attr-defined]
    monkeypatch.setattr(fair_turns, "MAX_WAITING", 0)  # no request may wait
    async with turns.turn(("partner", -1)):
        refused = await api.query(world.keys["full"], "{ viewer { name } }")
    assert refused.status == 429 and refused.codes == {"RATE_LIMITED"}
    assert refused.headers["retry-after"] == "1" and refused.body["errors"][0]["extensions"]["retryAfter"] == 1
    with Session(sync_engine) as session:
        last = session.scalars(select(AccessRecord).order_by(AccessRecord.id.desc())).first()
    assert last is not None and last.error_code == "RATE_LIMITED" and last.http_status == 429
    monkeypatch.undo()
    assert (await api.query(world.keys["full"], "{ viewer { name } }")).status == 200  # nothing was held
