"""The access ledger's group commit (api/ledger/group_commit.py) against each request committing its own
ledger transaction (what step 5 did before it), in one run: C clients send the benchmark's page
(bench/run.py) through the app in process, each its next request once answered, alternately with
either writer on the same app. It prints requests per second (median of the rounds), the ratio, and
the ledger commits per request.

    python -m bench.group_commit [--db sqlite|postgresql|both] [--size medium] [--clients 8] [--rounds 5]

The throwaway PostgreSQL of the benchmarks runs with fsync and synchronous_commit off
(tests/postgres_server.py): a commit there costs a round trip, not a flush to disk. The README's
PostgreSQL figures were measured on a server with both on, named by PARTNER_API_BENCH_POSTGRES_URL.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import types
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from sqlalchemy import event

from api.clock import shifted
from api.http.app import create_app
from api.ledger.group_commit import GroupCommit, LedgerWork
from api.protection.fair_turns import LINGER_SECONDS
from api.settings import Settings
from bench.run import (
    CLOCK_OFFSET,
    PAGE,
    PARTNER,
    UNLIMITED,
    _asgi_client,
    _checked,
    database_urls,
    page_variables,
    prepare,
)


async def _own_transaction(self: GroupCommit, work: LedgerWork) -> None:
    """Step 5 before group commit: each request's record in a transaction and a commit of its own."""
    async with self.sessions() as session, self.writer_lock(session):
        await self.write(session, [work])
        await session.commit()


@contextmanager
def _counted_commits(app: Any) -> Iterator[list[int]]:
    commits: list[int] = []

    def on_commit(_connection: Any) -> None:
        commits.append(1)

    engine = app.state.engine.sync_engine
    event.listen(engine, "commit", on_commit)
    try:
        yield commits
    finally:
        event.remove(engine, "commit", on_commit)


async def _measure(url: str, keys: dict[str, Any], clients: int, per_client: int, rounds: int) -> dict[str, Any]:
    # Room for every client at once: the worker's places and the partner's gate are not what is measured.
    settings = Settings(database_url=url, secret_key="bench", max_concurrent_requests_per_worker=clients, **UNLIMITED)
    app = create_app(settings, clock=shifted(CLOCK_OFFSET))
    ledger = app.state.ledger
    grouped_commit = ledger.commit
    payload = {"query": PAGE, "variables": page_variables(url, keys)}
    headers = {"Authorization": f"Bearer {keys[PARTNER]['key']}"}
    rates: dict[str, list[float]] = {"grouped": [], "alone": []}
    commits_per_request: dict[str, list[float]] = {"grouped": [], "alone": []}
    try:
        async with _asgi_client(app) as client:
            _checked(await client.post("/graphql", json=payload, headers=headers))  # warm: caches, the key's gate
            # That request's owner was its address, not yet its partner: once it stops lingering, the
            # partner alone holds the worker's places (api/protection/fair_turns.py).
            await asyncio.sleep(LINGER_SECONDS)

            async def one_client() -> None:
                for _ in range(per_client):
                    _checked(await client.post("/graphql", json=payload, headers=headers))

            for _ in range(rounds):
                for mode in ("grouped", "alone"):
                    ledger.commit = grouped_commit if mode == "grouped" else types.MethodType(_own_transaction, ledger)
                    with _counted_commits(app) as commits:
                        started = time.perf_counter()
                        await asyncio.gather(*(one_client() for _ in range(clients)))
                        elapsed = time.perf_counter() - started
                    requests = clients * per_client
                    rates[mode].append(requests / elapsed)
                    # every commit of the app: the budget charges' (one per request) and the ledger's
                    commits_per_request[mode].append(len(commits) / requests)
    finally:
        await app.state.engine.dispose()
    grouped, alone = statistics.median(rates["grouped"]), statistics.median(rates["alone"])
    return {
        "grouped_rps": round(grouped, 1),
        "alone_rps": round(alone, 1),
        "ratio": round(grouped / alone, 2),
        "commits_per_request_grouped": round(statistics.median(commits_per_request["grouped"]), 2),
        "commits_per_request_alone": round(statistics.median(commits_per_request["alone"]), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="both", choices=["sqlite", "postgresql", "both"])
    parser.add_argument("--size", default="medium", choices=["medium", "large"])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=10, help="per client and round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with ExitStack() as stack:
        for kind, url_of in database_urls(args.db, stack).items():
            url = url_of(args.size)
            keys = prepare(url, args.size)
            result = asyncio.run(_measure(url, keys, args.clients, args.requests, args.rounds))
            print(f"{kind:10} {args.clients} clients: {result}", flush=True)


if __name__ == "__main__":
    main()
