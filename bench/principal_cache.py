"""Step 3 alone: what authenticating a known key costs with and without the principal cache.

    python -m bench.principal_cache [--db sqlite|postgresql|both] [--iterations 2000]

On the benchmark's medium data set (bench/data/, seeded by `python -m bench.run` if missing), each
variant authenticates the same key on a fresh session from the app's own factory, the variants
taking turns call by call:
  full     api.identity.authentication.authenticate: the key, its partner and the latest policy
           release in one SELECT, then the hash comparison
  cached   the worker's PrincipalCache hit: on SQLite one SELECT of the version row; on PostgreSQL
           none (its listener connected, as in a worker)
Each also within one open session (the statements alone: the pipeline opens its session for
step 4 anyway). Medians in microseconds, and cached / full.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from typing import Any

from api.clock import shifted
from api.data.database import make_async_engine, make_session_factory
from api.identity.authentication import authenticate
from api.identity.principal_cache import principal_cache
from api.settings import Settings
from bench.run import CLOCK_OFFSET, PARTNER, database_urls, prepare


async def measure(url: str, keys: dict[str, Any], iterations: int) -> dict[str, float]:
    engine = make_async_engine(url)
    sessions = make_session_factory(engine)
    cache = principal_cache(Settings(database_url=url))
    await cache.start()
    listener = getattr(cache.freshness, "wait_listening", None)
    if listener is not None:
        await listener(30)
    clock, token = shifted(CLOCK_OFFSET), keys[PARTNER]["key"]

    async def full() -> None:
        async with sessions() as session:
            assert await authenticate(session, token, clock()) is not None

    async def cached() -> None:
        async with sessions() as session:
            assert await cache.authenticate(session, token, clock()) is not None

    shared = sessions()  # the statements alone: the pipeline's session is open for step 4 anyway

    async def full_in_session() -> None:
        assert await authenticate(shared, token, clock()) is not None

    async def cached_in_session() -> None:
        assert await cache.authenticate(shared, token, clock()) is not None

    variants: dict[str, Callable[[], Awaitable[None]]] = {
        "full": full,
        "cached": cached,
        "full-in-session": full_in_session,
        "cached-in-session": cached_in_session,
    }
    timings: dict[str, list[float]] = {name: [] for name in variants}
    try:
        for _ in range(50):  # warm: connections, prepared statements, the cache's entry
            for call in variants.values():
                await call()
        for _ in range(iterations):
            for name, call in variants.items():
                started = time.perf_counter()
                await call()
                timings[name].append((time.perf_counter() - started) * 1e6)
    finally:
        await shared.close()
        await cache.stop()
        await engine.dispose()
    return {name: statistics.median(values) for name, values in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="sqlite", choices=["sqlite", "postgresql", "both"])
    parser.add_argument("--iterations", type=int, default=2000)
    args = parser.parse_args()
    with ExitStack() as stack:
        for db, url_of in database_urls(args.db, stack).items():
            url = url_of("medium")
            result = asyncio.run(measure(url, prepare(url, "medium"), args.iterations))
            for where, suffix in (("a session opened and closed for each", ""), ("in one open session", "-in-session")):
                full, cached = result[f"full{suffix}"], result[f"cached{suffix}"]
                print(f"{db}, {where}: full lookup {full:.0f} us, cache hit {cached:.0f} us ({cached / full:.2f}x)")


if __name__ == "__main__":
    main()
