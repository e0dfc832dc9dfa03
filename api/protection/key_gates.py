"""Each partner's share of a worker: at most N of its requests run at once, across all its keys.

The budget (api.protection.budgets) refuses what a partner cannot pay, but each refusal still costs the
worker an authentication, a budget update and a ledger row; a partner sending from many
connections, or with many keys, would crowd the others out of the event loop and out of the
worker's database connections with refusals alone. So, per worker process, a partner's requests
run at most N at a time, before any database work: the next ones wait their turn (holding
nothing), and past QUEUE_FACTOR * N waiting, a request is refused (RATE_LIMITED) at once. N is
the smaller of PARTNER_API_MAX_CONCURRENT_REQUESTS_PER_PARTNER and the partner's share of the
worker's connection pool (PARTNER_API_PARTNER_POOL_SHARE): a request holds one connection while it
runs, so no partner can hold more than its share. Other partners' requests do not queue behind them.

Before authentication the partner is not known from the database: the gate learns, after a
request authenticates, which partner a credential belongs to (a bounded map, keyed by a hash of
the whole presented token as `api.identity.authentication.bearer_token` reads it, never by its
public prefix: a client that knows another partner's key prefix must not be able to fill that
partner's gate with wrong secrets). A credential not learned yet has a gate of its own. Idle
gates are dropped, so the table holds only requests in flight.

A partner whose request was refused for its budget is remembered with its bucket as the refusal
read it; until the bucket would be full again, a request of one of its learned keys is priced here
(api.protection.pre_pricing) and refused at once, before the database, only when it costs more
than the bucket holds by now: a cheap request still passes, and a client ignoring Retry-After
costs the worker almost nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from cachetools import LRUCache

from api.identity.authentication import Principal
from api.protection.budgets import Throttle

QUEUE_FACTOR = 8
LEARNED_CREDENTIALS = 10_000  # the memory bound of the credential -> partner map


@dataclass
class _Gate:
    running: asyncio.Semaphore
    users: int = 0  # requests running or waiting


def _key(credential: str | None) -> bytes:
    return hashlib.sha256((credential or "").encode("utf-8", "surrogatepass")).digest()


def _proven_key(credential: str | None, client: str | None) -> bytes:
    """A proof-bound credential as proven from one client address."""
    return _key(f"{client}\n{credential}")


@dataclass(frozen=True)
class GateRefusal:
    """The gate turns a request away before any database work (not a write's `api.services.writes.Refusal`)."""

    retry_after: int  # seconds
    message: str
    principal: Principal | None = None  # whose budget is cooling down


@dataclass(frozen=True)
class _Cooling:
    """A partner's bucket as its last refusal (or a later charge) read it, refilled by the clock since."""

    principal: Principal
    throttle: Throttle
    at: float  # monotonic

    def available(self, now: float) -> float:
        t = self.throttle
        return min(t.maximum_available, t.currently_available + t.restore_rate * max(0.0, now - self.at))

    def over(self, now: float) -> bool:
        return self.available(now) >= self.throttle.maximum_available


@dataclass
class CredentialGates:
    """The per-partner gates of one worker.

    Example: `CredentialGates(limit=4)`; `async with gates.turn(credential, price) as refusal: ...`.
    """

    limit: int
    _gates: dict[bytes, _Gate] = field(default_factory=dict)
    _partners: LRUCache[bytes, int] = field(default_factory=lambda: LRUCache(maxsize=LEARNED_CREDENTIALS))
    _proven: LRUCache[bytes, bool] = field(default_factory=lambda: LRUCache(maxsize=LEARNED_CREDENTIALS))
    _cooling: dict[int, _Cooling] = field(default_factory=dict)  # partner id -> its bucket, while refilling

    def knows(self, credential: str | None, client: str | None = None) -> bool:
        """Whether the credential authenticated lately in this worker (a proof-bound one: from `client`)."""
        if credential is None:
            return False
        return _key(credential) in self._partners or _proven_key(credential, client) in self._proven

    def partner_of(self, credential: str | None) -> int | None:
        """The partner the credential authenticated as lately in this worker, if any."""
        return None if credential is None else self._partners.get(_key(credential))

    def learn(self, credential: str | None, principal: Principal) -> None:
        """The credential authenticated as one of the partner's keys: from now on it shares the partner's gate."""
        if credential is not None:
            self._partners[_key(credential)] = principal.partner_id

    def proved(self, credential: str | None, client: str | None) -> None:
        """The credential authenticated from `client` with a proof of possession (a DPoP-bound token): it
        is known there (the address screen lets it pass), but stands for no partner's gate, nor for
        anyone elsewhere: its text alone is no proof."""
        if credential is not None:
            self._proven[_proven_key(credential, client)] = True

    def forget(self, credential: str | None, client: str | None = None) -> None:
        """The credential no longer authenticates (revoked, expired, its partner suspended, a bad proof)."""
        self._partners.pop(_key(credential), None)
        self._proven.pop(_proven_key(credential, client), None)

    def budget_read(self, principal: Principal, throttle: Throttle, refused: bool) -> None:
        """The partner's bucket as a charge just read it: remembered after a refusal, and refreshed until full."""
        now = time.monotonic()
        self._cooling = {p: cooling for p, cooling in self._cooling.items() if not cooling.over(now)}
        if refused or principal.partner_id in self._cooling:
            self._cooling[principal.partner_id] = _Cooling(principal, throttle, now)

    @asynccontextmanager
    async def turn(
        self, credential: str | None, price: Callable[[], int | None] = lambda: None
    ) -> AsyncIterator[GateRefusal | None]:
        """Waits for one of the partner's N places (yields None); yields a refusal, at once, when the
        request costs more than its cooling budget holds (`price`: its cost, None when unknown), or too
        many of its requests already wait."""
        key = _key(credential)
        partner = self._partners.get(key)
        cooling = self._cooling.get(partner) if partner is not None else None
        if cooling is not None and (refusal := self._cooled(cooling, price)) is not None:
            yield refusal
            return
        gate_key = b"partner:%d" % partner if partner is not None else key
        gate = self._gates.setdefault(gate_key, _Gate(asyncio.Semaphore(self.limit)))
        if gate.users >= (QUEUE_FACTOR + 1) * self.limit:
            yield GateRefusal(1, "Too many of your requests are running or waiting; retry in 1 s.")
            return
        gate.users += 1
        try:
            async with gate.running:
                yield None
        finally:
            gate.users -= 1
            if gate.users == 0:
                del self._gates[gate_key]

    def _cooled(self, cooling: _Cooling, price: Callable[[], int | None]) -> GateRefusal | None:
        now = time.monotonic()
        if cooling.over(now):
            return None
        cost, available = price(), cooling.available(now)
        if cost is None or cost <= available:  # unknown (the view refuses it free of charge) or affordable
            return None
        rate = cooling.throttle.restore_rate
        wait = max(1, math.ceil((cost - available) / rate)) if rate > 0 else 3600
        return GateRefusal(
            wait,
            f"Your budget holds {int(available)} points and this operation costs {cost}; retry in {wait} s.",
            cooling.principal,
        )


def partner_limit(per_partner: int, pool_share: float, pool_capacity: int | None) -> int:
    """N: the configured concurrency, bounded by the partner's share of the worker's connections (at least 1)."""
    if pool_capacity is None:
        return per_partner
    return max(1, min(per_partner, math.floor(pool_share * pool_capacity)))
