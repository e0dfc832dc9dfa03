"""The worker's places go round-robin to the partners waiting; a partner alone uses them all."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable

from hypothesis import given, settings
from hypothesis import strategies as st

from api.protection import fair_turns
from api.protection.fair_turns import FairTurns


class Requests:
    """Fake requests, each holding its place until the test finishes it."""

    def __init__(self, turns: FairTurns) -> None:
        self.turns = turns
        self.admitted: list[tuple[Hashable, int]] = []  # (owner, number), in admission order
        self.finish: dict[tuple[Hashable, int], asyncio.Event] = {}
        self.tasks: dict[tuple[Hashable, int], asyncio.Task[None]] = {}
        self.refused: list[tuple[Hashable, int]] = []
        self.count = 0

    def send(self, owner: Hashable) -> tuple[Hashable, int]:
        self.count += 1
        name = (owner, self.count)
        self.finish[name] = asyncio.Event()
        self.tasks[name] = asyncio.create_task(self._run(name))
        return name

    async def _run(self, name: tuple[Hashable, int]) -> None:
        async with self.turns.turn(name[0]) as admitted:
            if not admitted:
                self.refused.append(name)
                return
            self.admitted.append(name)
            await self.finish[name].wait()

    def running(self) -> list[tuple[Hashable, int]]:
        return [name for name in self.admitted if not self.tasks[name].done()]

    async def done(self, name: tuple[Hashable, int]) -> None:
        self.finish[name].set()
        await settle()


class Clock:
    """Time stands still unless a test moves it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_partner_alone_uses_every_place() -> None:
    requests = Requests(FairTurns(clock=Clock(), places=4))
    names = [requests.send("A") for _ in range(6)]
    await settle()
    assert requests.admitted == names[:4]  # all the places, in arrival order; the rest wait
    await requests.done(names[0])
    assert requests.admitted == names[:5]


async def test_a_partner_arriving_at_a_busy_worker_gets_the_next_place_and_turns_alternate() -> None:
    requests = Requests(FairTurns(clock=Clock(), places=2))
    flood = [requests.send("flood") for _ in range(6)]
    await settle()
    assert requests.admitted == flood[:2]
    sync = [requests.send("sync") for _ in range(3)]
    await settle()
    assert requests.admitted == flood[:2]  # the worker is full: the newcomer waits for a place
    await requests.done(flood[0])
    assert requests.admitted[-1] == sync[0]  # not behind the flood's four waiting requests
    await requests.done(flood[1])
    assert requests.admitted[-1] == flood[2]  # each its share (1 of 2 places), in turn
    for _ in range(4):
        await requests.done(requests.running()[0])
    owners = [owner for owner, _ in requests.admitted]
    assert owners == ["flood", "flood", "sync", "flood", "sync", "flood", "sync", "flood"]


async def test_a_partner_over_its_share_waits_for_the_other_even_with_a_free_place() -> None:
    requests = Requests(FairTurns(clock=Clock(), places=4))
    flood = [requests.send("flood") for _ in range(12)]
    await settle()
    sync = requests.send("sync")
    await settle()
    await requests.done(flood[0])
    assert requests.admitted[-1] == sync
    await requests.done(flood[1])
    await requests.done(flood[2])
    # a free place, but the flood already runs one request beside the sync's: it waits
    assert [owner for owner, _ in requests.running()] == ["flood", "sync"]
    assert requests.turns.running == 2 and requests.turns.share() == 1
    await requests.done(sync)
    await requests.done(requests.running()[0])
    # the sync's next request comes a moment later: meanwhile the flood does not refill every place
    assert [owner for owner, _ in requests.running()] == ["flood"]
    next_sync = requests.send("sync")
    await settle()
    assert requests.admitted[-1] == next_sync  # a free place at once
    await requests.done(next_sync)
    requests.turns.clock.now += fair_turns.LINGER_SECONDS  # the sync is gone: the flood is alone again
    await requests.done(requests.running()[0])
    assert len(requests.running()) == 4 and all(owner == "flood" for owner, _ in requests.running())


async def test_past_its_queue_an_owners_next_request_is_refused_at_once_and_others_still_wait(monkeypatch) -> None:
    monkeypatch.setattr(fair_turns, "MAX_WAITING", 16)
    requests = Requests(FairTurns(clock=Clock(), places=2))
    flood = [requests.send("flood") for _ in range(2 + 16 + 3)]
    await settle()
    assert requests.refused == flood[-3:]  # 2 running, 16 waiting, the last 3 turned away
    sync = requests.send("sync")
    await settle()
    assert sync not in requests.refused
    await requests.done(flood[0])
    assert requests.admitted[-1] == sync


async def test_a_waiter_that_goes_away_gives_its_turn_on() -> None:
    turns = FairTurns(clock=Clock(), places=1)
    requests = Requests(turns)
    first = requests.send("A")
    await settle()
    gone, after = requests.send("B"), requests.send("C")
    await settle()
    requests.tasks[gone].cancel()
    await settle()
    await requests.done(first)
    assert requests.admitted == [first, after]
    await requests.done(after)
    assert turns.running == 0 and not turns._waiting


async def test_a_request_cancelled_as_it_is_granted_gives_its_place_back() -> None:
    turns = FairTurns(clock=Clock(), places=1)
    requests = Requests(turns)
    first = requests.send("A")
    await settle()
    granted = requests.send("B")
    await settle()
    requests.finish[first].set()
    await asyncio.sleep(0)  # A leaves and grants B's future; B has not run yet
    await asyncio.sleep(0)
    requests.tasks[granted].cancel()
    await settle()
    assert turns.running == 0 and not turns._waiting
    late = requests.send("C")
    await settle()
    assert late in requests.admitted


@settings(max_examples=60, deadline=None)
@given(
    places=st.integers(1, 4),
    steps=st.lists(st.one_of(st.sampled_from(["A", "B", "C"]), st.integers(0, 20)), min_size=1, max_size=40),
)
def test_places_are_bounded_and_never_left_idle_while_someone_may_use_them(places: int, steps: list) -> None:
    """Any arrivals (an owner's name) and finishes (an index into the running ones), in any order."""

    async def scenario() -> None:
        turns = FairTurns(clock=Clock(), places=places)
        requests = Requests(turns)
        for step in steps:
            if isinstance(step, str):
                requests.send(step)
            elif running := requests.running():
                requests.finish[running[step % len(running)]].set()
            await settle()
            running = requests.running()
            assert len(running) == turns.running <= places
            waiting = {
                owner
                for owner, number in requests.tasks
                if (owner, number) not in requests.admitted and (owner, number) not in requests.refused
            }
            share = turns.share()
            for owner in waiting:  # a waiter waits only for a full worker or for its own share
                assert len(running) == places or sum(1 for o, _ in running if o == owner) >= share
            if len(turns.active()) == 1 and waiting:
                assert len(running) == places  # alone, an owner uses every place
            elif len(turns.active()) > 1:
                assert share == 1
        for event in requests.finish.values():
            event.set()
        await settle()
        for _ in range(len(steps)):
            for event in requests.finish.values():
                event.set()
            await settle()
        assert turns.running == 0 and not turns._waiting

    asyncio.run(scenario())
