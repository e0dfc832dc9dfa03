"""Each key's share of a worker: at most N of its requests run at once, the next ones wait.

The budget (api.protection.budgets) refuses what a partner cannot pay, but each refusal still costs the
worker an authentication, a budget update and a ledger row; a partner sending from many
connections at once would crowd the others out of the event loop with refusals alone. So, per
worker process, requests presenting the same credential run at most N at a time, before any
database work: the next ones wait their turn (holding nothing), and past QUEUE_FACTOR * N
waiting, a request is refused (RATE_LIMITED) at once. Other keys' requests do not queue behind
them here (they still share the worker's pool of database connections).

The gate is keyed by a hash of the whole presented token (as `api.identity.authentication.bearer_token` reads
it), not by its public prefix: a client that knows another partner's key prefix must not be
able to fill that partner's gate with wrong secrets. Idle gates are dropped, so the table holds
only requests in flight.

A key whose request was refused for its budget is told when to come back (Retry-After); until
then its requests are refused here at once, before the database, so that a client ignoring the
answer costs the worker almost nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from api.identity.authentication import Principal

QUEUE_FACTOR = 8


@dataclass
class _Gate:
    running: asyncio.Semaphore
    users: int = 0  # requests running or waiting


def _key(credential: str | None) -> bytes:
    return hashlib.sha256((credential or "").encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True)
class GateRefusal:
    """The gate turns a request away before any database work (not a write's `api.services.writes.Refusal`)."""

    retry_after: int  # seconds
    message: str
    principal: Principal | None = None  # whose budget is cooling down


@dataclass
class CredentialGates:
    limit: int
    _gates: dict[bytes, _Gate] = field(default_factory=dict)
    # key -> (monotonic instant it may come back, its principal)
    _cooling: dict[bytes, tuple[float, Principal]] = field(default_factory=dict)

    def cool(self, credential: str | None, principal: Principal, seconds: int) -> None:
        """The credential's budget is spent for `seconds`: refuse it here until then."""
        now = time.monotonic()
        # keys refused lately only
        self._cooling = {k: cooling for k, cooling in self._cooling.items() if cooling[0] > now}
        self._cooling[_key(credential)] = (now + seconds, principal)

    @asynccontextmanager
    async def turn(self, credential: str | None) -> AsyncIterator[GateRefusal | None]:
        """Waits for one of the credential's N places (yields None); yields a refusal, at once, when its
        budget is cooling down or too many of its requests already wait."""
        key = _key(credential)
        until, principal = self._cooling.get(key, (0.0, None))
        if until > time.monotonic():
            wait = math.ceil(until - time.monotonic())
            yield GateRefusal(wait, f"Your budget is spent; retry in {wait} s.", principal)
            return
        gate = self._gates.setdefault(key, _Gate(asyncio.Semaphore(self.limit)))
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
                del self._gates[key]
