"""Before authentication: each client address may fail only so often.

A request without a valid key costs a key lookup and a ledger row; a flood of them, one wrong key
after another, would cost the database that much per request. So, per worker, each client address
may make FAILURES unauthenticated requests in a WINDOW of seconds (counted from its first one);
past that, its requests are refused (429) at once, before any database work, until the window ends.
Credentials that authenticated lately in this worker (api/protection/key_gates.py `knows`) are not
held back: a partner sharing an address (a NAT, a proxy) with the flood keeps working.

Memory is bounded: at most MAX_ADDRESSES are tracked, the least recently seen dropped first
(cachetools' time-aware LRU cache: expiry and the bound in one well-kept structure). An IPv6
client is counted by its /64, the block one subscriber holds. The address is the TCP peer's, or,
only when the peer is a configured trusted proxy, the nearest untrusted one in X-Forwarded-For
(set by the proxies, read right to left: what the client wrote itself is to the left and is ignored).
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable, Sequence

from cachetools import TLRUCache
from starlette.requests import Request

__all__ = ["AddressLimiter"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _parsed(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _counted(address: str) -> str:
    """What is counted: the address, or an IPv6 address's /64."""
    parsed = _parsed(address)
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed) if parsed else address


class AddressLimiter:
    """Counts each client address's failed requests and refuses the address past `failures` in `window` s.

    Example: `AddressLimiter(failures=30, window=60, max_addresses=100_000, trusted_proxies=["10.0.0.0/8"])`.
    """

    def __init__(
        self,
        failures: int,
        window: float,
        max_addresses: int,
        trusted_proxies: Sequence[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit, self.window, self.clock = failures, window, clock
        self.proxies: tuple[Network, ...] = tuple(ipaddress.ip_network(p, strict=False) for p in trusted_proxies)
        # address -> (failures, end of its window)
        self._failures: TLRUCache[str, tuple[int, float]] = TLRUCache(
            maxsize=max_addresses, ttu=lambda _key, value, _now: value[1], timer=clock
        )

    def client(self, request: Request) -> str | None:
        """The client's address: the peer's, or the one its trusted proxies forwarded."""
        peer = _parsed(request.client.host) if request.client else None
        if peer is None or not self._trusted(peer):
            return request.client.host if request.client else None
        hops = [hop for header in request.headers.getlist("x-forwarded-for") for hop in header.split(",")]
        nearest = peer
        for hop in reversed(hops):
            parsed = _parsed(hop)
            if parsed is None:  # a malformed entry: nothing to its left can be trusted
                break
            nearest = parsed
            if not self._trusted(parsed):
                break
        return str(nearest)

    def refusal(self, address: str | None) -> int | None:
        """Seconds until the address may try again, when it has failed too often; None when it may."""
        if address is None:
            return None
        failures, ends = self._failures.get(_counted(address), (0, 0.0))
        if failures < self.limit:
            return None
        return max(1, math.ceil(ends - self.clock()))

    def failed(self, address: str | None) -> None:
        """One more request from the address without a credential this worker knows, counted as a failure
        when it arrives (as `client` reads it): a burst sent at once is counted before any of it is answered."""
        if address is None:
            return
        counted = _counted(address)
        failures, ends = self._failures.get(counted, (0, self.clock() + self.window))
        self._failures[counted] = (failures + 1, ends)

    def forgive(self, address: str | None) -> None:
        """Take back the failure counted on arrival: the request authenticated after all."""
        counted = _counted(address) if address is not None else None
        if counted is not None and counted in self._failures:
            failures, ends = self._failures[counted]
            self._failures[counted] = (max(0, failures - 1), ends)

    @staticmethod
    def subscriber(address: str | None) -> str | None:
        """Whom the address stands for: itself, or an IPv6 address's /64 (one subscriber's many addresses)."""
        return _counted(address) if address is not None else None

    def _trusted(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(address in network for network in self.proxies)

