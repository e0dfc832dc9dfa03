"""Fairness under load: one partner floods the API while another runs its normal sync.

    python -m bench.fairness [--db sqlite|postgresql]

The server is `partner-api serve` (one worker) on 127.0.0.1, on the benchmark's 10,000-appointment
data set; the load comes from this machine, bounded in count and in time. The flooding partner
sends expensive pages from FLOOD_CONNECTIONS connections at once, from a process of its own; the
syncing partner pages through a week of appointments and the change feed, one request after
another, first alone (the baseline), then during the flood.

The stated bound, checked at the end (exit status 1 when missed): every request of the syncing
partner succeeds, most of the flooder's are refused (RATE_LIMITED), none gets a 5xx, and the
syncing partner's median latency under the flood stays within BOUND times its median alone.
tests/security/test_fairness.py runs the same load and checks all but the latency, which a
test on a shared machine cannot assert.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

import httpx

FLOOD_CONNECTIONS = 32
FLOOD_MAX_REQUESTS = 4000
FLOOD_MAX_SECONDS = 20.0
SYNC_ROUNDS = 3
BOUND = 5.0  # the syncing partner's median latency under the flood, as a multiple of its median alone

FLOOD = """query($p: ID!, $from: DateTime!, $to: DateTime!) {
  appointments(practiceId: $p, from: $from, to: $to, first: 50) {
    edges { node { id reason patient { firstName lastName gender birthDate phone email } practitioner { id } practice { id } } } } }"""
DAY_PAGE = """query Day($p: ID!, $from: DateTime!, $to: DateTime!, $after: String) {
  appointments(practiceId: $p, from: $from, to: $to, first: 20, after: $after) {
    edges { node { id startsAt status patient { id firstName lastName } } } pageInfo { hasNextPage endCursor } } }"""
FEED = """query Feed($p: ID!, $since: String) { appointmentChanges(practiceId: $p, first: 50, since: $since) {
  edges { node { kind appointmentId } } pageInfo { endCursor } } }"""


@dataclass(frozen=True)
class Partner:
    key: str
    practice_id: str


@dataclass
class Fairness:
    alone_ms: list[float]
    alone: Counter[str]
    flooded_ms: list[float]
    flooded: Counter[str]
    flood: Counter[str]

    @property
    def ratio(self) -> float:
        return statistics.median(self.flooded_ms) / statistics.median(self.alone_ms)

    def problems(self) -> list[str]:
        """What breaks the stated bound, latency aside."""
        problems = []
        if set(self.alone) != {"ok"} or set(self.flooded) != {"ok"}:
            problems.append(f"sync requests failed: alone {dict(self.alone)}, under the flood {dict(self.flooded)}")
        if self.flood["429 RATE_LIMITED"] <= sum(self.flood.values()) / 2:
            problems.append(f"the flooder was not throttled: {dict(self.flood)}")
        if any(outcome.startswith("5") for outcome in self.flood):
            problems.append(f"server errors under the flood: {dict(self.flood)}")
        return problems

    def summary(self) -> str:
        def figures(samples: list[float]) -> str:
            return f"median {statistics.median(samples):.1f} ms, p90 {statistics.quantiles(samples, n=10)[-1]:.1f} ms"

        return (
            f"sync alone: {figures(self.alone_ms)} ({len(self.alone_ms)} requests, {dict(self.alone)})\n"
            f"sync under the flood: {figures(self.flooded_ms)} ({len(self.flooded_ms)} requests, {dict(self.flooded)})\n"
            f"ratio of medians: {self.ratio:.2f} (bound {BOUND})\n"
            f"flood: {sum(self.flood.values())} requests from {FLOOD_CONNECTIONS} connections: {dict(self.flood)}"
        )


@contextmanager
def served(database_url: str, log: Path) -> Iterator[str]:
    """`partner-api serve`, one worker, on a free port of 127.0.0.1; yields its base URL once ready."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ, "PARTNER_API_DATABASE_URL": database_url, "PARTNER_API_SECRET_KEY": "fairness",
        "PARTNER_API_LOG_LEVEL": "warning", "PARTNER_API_GRAPHIQL": "false",
    }
    with log.open("w") as output:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "partner-api"), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=output, stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while not _ready(base):
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"the server did not start: {log.read_text()[-2000:]}")
                time.sleep(0.2)
            yield base
        finally:
            process.terminate()
            process.wait(timeout=30)


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


async def sync(client: httpx.AsyncClient, partner: Partner, day: datetime) -> tuple[list[float], Counter[str]]:
    """What a practice-management software does: a week of days, page by page, then the feed."""
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    headers = {"Authorization": f"Bearer {partner.key}"}

    async def ask(query: str, variables: dict[str, object]) -> dict:
        started = time.perf_counter()
        response = await client.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
        latencies.append((time.perf_counter() - started) * 1000)
        body = response.json()
        outcomes["ok" if response.status_code == 200 and not body.get("errors") else f"{response.status_code} {body}"] += 1
        return body.get("data") or {}

    since = None
    for _ in range(SYNC_ROUNDS):
        for offset in range(-1, 6):
            start, after = day + timedelta(days=offset), None
            while True:
                variables = {"p": partner.practice_id, "from": start.isoformat(), "to": (start + timedelta(days=1)).isoformat(), "after": after}
                page = (await ask(DAY_PAGE, variables)).get("appointments")
                if not page or not page["pageInfo"]["hasNextPage"]:
                    break
                after = page["pageInfo"]["endCursor"]
        feed = (await ask(FEED, {"p": partner.practice_id, "since": since})).get("appointmentChanges")
        since = feed["pageInfo"]["endCursor"] if feed else None
    return latencies, outcomes


def _flood(base: str, partner: Partner, day: datetime, stop: EventType, results: Queue) -> None:
    """In a process of its own, so that its client work does not delay the syncing client's."""
    results.put(asyncio.run(_flood_connections(base, partner, day, stop)))


async def _flood_connections(base: str, partner: Partner, day: datetime, stop: EventType) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    started = time.monotonic()
    variables = {"p": partner.practice_id, "from": (day - timedelta(days=1)).isoformat(), "to": (day + timedelta(days=2)).isoformat()}
    limits = httpx.Limits(max_connections=FLOOD_CONNECTIONS, max_keepalive_connections=FLOOD_CONNECTIONS)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:

        async def connection() -> None:
            while not stop.is_set() and sum(outcomes.values()) < FLOOD_MAX_REQUESTS and time.monotonic() - started < FLOOD_MAX_SECONDS:
                response = await client.post(
                    "/graphql", json={"query": FLOOD, "variables": variables}, headers={"Authorization": f"Bearer {partner.key}"}
                )
                codes = {e["extensions"]["code"] for e in response.json().get("errors", [])}
                outcomes[f"{response.status_code} {','.join(sorted(codes)) or 'ok'}"] += 1

        await asyncio.gather(*(connection() for _ in range(FLOOD_CONNECTIONS)))
    return outcomes


async def measure(base: str, syncing: Partner, flooding: Partner, day: datetime) -> Fairness:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        await sync(client, syncing, day)  # warm-up: connections, caches, the partner's budget row
        alone_ms, alone = await sync(client, syncing, day)
        processes = multiprocessing.get_context("spawn")
        stop, results = processes.Event(), processes.Queue()
        flooder = processes.Process(target=_flood, args=(base, flooding, day, stop, results), daemon=True)
        flooder.start()
        try:
            await asyncio.sleep(2.0)  # the flood at full pace, the flooder's budget spent
            flooded_ms, flooded = await sync(client, syncing, day)
        finally:
            stop.set()
            flood = await asyncio.to_thread(results.get, timeout=FLOOD_MAX_SECONDS + 30)
            flooder.join(timeout=30)
    return Fairness(alone_ms, alone, flooded_ms, flooded, flood)


def main() -> None:
    from bench.run import REFERENCE, database_urls, prepare

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="sqlite", choices=["sqlite", "postgresql"])
    args = parser.parse_args()
    with ExitStack() as stack:
        url = database_urls(args.db, stack)[args.db]("10k")
        keys = prepare(url, "10k")
        syncing, flooding = (Partner(keys[name]["key"], keys[name]["grants"][0]["practice_id"]) for name in ("Logimed", "AgendaPlus"))
        day = datetime.combine(REFERENCE, datetime.min.time(), tzinfo=UTC) + timedelta(days=1)
        with served(url, Path(stack.enter_context(_temporary_log()))) as base:
            result = asyncio.run(measure(base, syncing, flooding, day))
    print(result.summary())
    problems = result.problems() + ([f"latency ratio {result.ratio:.2f} is past the bound {BOUND}"] if result.ratio > BOUND else [])
    print(json.dumps({"ratio": round(result.ratio, 2), "problems": problems}))
    sys.exit(1 if problems else 0)


@contextmanager
def _temporary_log() -> Iterator[str]:
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        yield str(Path(directory) / "server.log")


if __name__ == "__main__":
    main()
