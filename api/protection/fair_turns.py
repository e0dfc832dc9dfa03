"""Fair turns of one worker's event loop: when the worker is busy, partners take turns, round-robin.

A worker is one event loop: every request it runs shares it, CPU-bound phases included (reading
the body's JSON, pricing, parsing, validation, execution, the ledger row of a refusal). The
per-partner gate (api.protection.key_gates) bounds how many requests of one partner run at once,
and its refusals cost no database work, but a flooding partner's requests, admitted or being
refused, still fill the loop, and another partner's request waits behind all of them.

So each request, once past the address screen, takes one of the worker's P places
(PARTNER_API_MAX_CONCURRENT_REQUESTS_PER_WORKER) before the gate, and holds it until its ledger
row is written. A partner alone may hold all P places. While several owners are active (running,
waiting, or done less than LINGER_SECONDS ago), each may start a request only while it runs none:
places freed go to the waiting owners in turn (round-robin), each owner's requests in arrival
order. So a partner arriving at a busy worker waits for one place to free, not for the flood's
queue, and then runs beside one request of each other active owner: a partner cannot hold more
than its turn of the loop while another waits. One each, not P / k: the requests running share
the loop's CPU, so each more request running beside one adds about its CPU time to that one's
latency (under bench.fairness's hostile flood, the syncing partner's median grew with P / k).

The owner is the partner when the gate has learned whose credential it is, else the client
address (an unknown key, or none, is charged to where it comes from: a flood of fresh invalid keys
is one owner, not thousands). Waiting holds nothing but the connection, so the queue is long: a
refusal is recorded in the ledger, work a place would not govern; past MAX_WAITING of one owner's
requests waiting, the next is refused at once (RATE_LIMITED, as the gate's own queue).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

MAX_WAITING = 256  # one owner's requests waiting for a place (each holds a connection, nothing more)
# An owner stays active this long after its last request ended: a client paging through results
# sends its next request a moment after the last answer, and the flood must not refill every
# place in between (else each of its requests waits for a place and runs beside P - 1 others).
LINGER_SECONDS = 1.0


@dataclass
class FairTurns:
    """The places of one worker, shared round-robin among their owners.

    Example: `FairTurns(places=8)`; `async with turns.turn(("partner", 7)): ...`.
    """

    places: int
    clock: Callable[[], float] = time.monotonic
    _running: Counter[Hashable] = field(default_factory=Counter)
    # owner -> when its last request ended, lately; oldest first, so that expired ones leave from the front
    _ended: OrderedDict[Hashable, float] = field(default_factory=OrderedDict)
    # owners with waiting requests, in turn order (the next to be served first)
    _waiting: OrderedDict[Hashable, deque[asyncio.Future[None]]] = field(default_factory=OrderedDict)

    @property
    def running(self) -> int:
        return sum(self._running.values())

    def active(self) -> set[Hashable]:
        """The owners running, waiting, or whose last request ended less than LINGER_SECONDS ago."""
        now = self.clock()
        while self._ended and now - next(iter(self._ended.values())) >= LINGER_SECONDS:
            self._ended.popitem(last=False)
        return self._waiting.keys() | self._running.keys() | self._ended.keys()

    def share(self) -> int:
        """The places each active owner may hold: all of them alone, one while others are active too."""
        return self.places if len(self.active()) <= 1 else 1

    def _may_start(self, owner: Hashable) -> bool:
        return self.running < self.places and self._running[owner] < self.share()

    @asynccontextmanager
    async def turn(self, owner: Hashable) -> AsyncIterator[bool]:
        """Waits for a place (at once when the worker has one free and the owner is within its share) and
        yields True; yields False at once when too many of the owner's requests already wait."""
        if len(self._waiting.get(owner, ())) >= MAX_WAITING:
            yield False
            return
        if owner in self._waiting or not self._may_start(owner):
            await self._wait(owner)
        else:
            self._running[owner] += 1
        try:
            yield True
        finally:
            self._release(owner)

    async def _wait(self, owner: Hashable) -> None:
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(owner, deque()).append(granted)
        self._admit()  # the newcomer changes the shares: perhaps another waiter may now start
        try:
            await granted
        except asyncio.CancelledError:  # the client went away, or the request timed out while waiting
            if granted.done() and not granted.cancelled():  # granted just before: the place is given back
                self._release(owner)
            else:
                self._withdraw(owner, granted)
            raise

    def _withdraw(self, owner: Hashable, granted: asyncio.Future[None]) -> None:
        queue = self._waiting.get(owner)
        if queue is not None and granted in queue:
            queue.remove(granted)
            if not queue:
                del self._waiting[owner]
        self._admit()

    def _release(self, owner: Hashable) -> None:
        self._running[owner] -= 1
        if self._running[owner] <= 0:
            del self._running[owner]
            self._ended.pop(owner, None)
            self._ended[owner] = self.clock()  # to the end: the latest
        self._admit()

    def _admit(self) -> None:
        """Gives free places to the waiting owners in turn, each served one request at a time."""
        share = self.share()  # the same throughout: each owner admitted was waiting, so stays active
        while self.running < self.places:
            owner = next((owner for owner in self._waiting if self._running[owner] < share), None)
            if owner is None:
                return
            queue = self._waiting.pop(owner)
            granted = queue.popleft()
            if queue:
                self._waiting[owner] = queue  # to the end of the turn order
            self._running[owner] += 1
            granted.set_result(None)
