"""Fairness under load: one partner floods the API while another runs its normal sync.

    python -m bench.fairness [--db sqlite|postgresql] [--flood expensive|hostile|four-keys|invalid-keys|all]

The server is `partner-api serve` (one worker) on 127.0.0.1, on the benchmark's 10,000-appointment
data set; the load comes from this machine, bounded in count and in time. The flooding partner
sends expensive pages from FLOOD_CONNECTIONS connections at once, from a process of its own; the
syncing partner pages through a week of appointments and the change feed, one request after
another, first alone (the baseline), then during the flood.

Four floods: `expensive` sends the most expensive valid pages; `hostile` sends known GraphQL
denial-of-service documents (fragment bombs, 1,000 fields, circular fragments, hundreds of
operations...), each made unique so that no cache answers them; `four-keys` sends the expensive
pages with four keys of the flooding partner, spread over its connections (the per-partner gate and
its share of the connection pool hold it, not a per-key one); `invalid-keys` sends a new well-formed
but unknown key with every request, from the same address as the syncing partner (the address
limiter refuses them before the database past its threshold, the syncing partner's known key passes).

The stated bound, checked at the end (exit status 1 when missed): every request of the syncing
partner succeeds under the expensive flood, at least SUCCESS of them under the others; most of the
expensive floods is refused (RATE_LIMITED), all of the hostile one (400) and all of the invalid keys
(401, then 429); none gets a 5xx; and the syncing partner's median latency under the expensive,
four-key and invalid-key floods stays within BOUND times its median alone (under the hostile flood it
is printed, not bounded: refusals of invalid documents are not charged to the flooder's budget, so
only the per-partner concurrency limit holds the flooder back).
tests/security/test_fairness.py runs the same load and checks all but the latency, which a
test on a shared machine cannot assert.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import multiprocessing
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event as EventType

import httpx

from tests.server_process import LOOPBACK, PARTNER_API, partner_api_env, running_server

FLOOD_CONNECTIONS = 32
FLOOD_MAX_REQUESTS = 4000
FLOOD_MAX_SECONDS = 20.0
SYNC_ROUNDS = 3
BOUND = 3.0  # the syncing partner's median latency under the flood, as a multiple of its median alone
SUCCESS = 0.99  # the share of the syncing partner's requests served under the floods but the expensive one
KINDS = ("expensive", "hostile", "four-keys", "invalid-keys")
LATENCY_BOUNDED = ("expensive", "four-keys", "invalid-keys")

FLOOD = """query($p: ID!, $from: DateTime!, $to: DateTime!) {
  appointments(practiceId: $p, from: $from, to: $to, first: 50) {
    edges { node { id reason patient { firstName lastName gender birthDate phone email } practitioner { id }
      practice { id } } } } }"""
DAY_PAGE = """query Day($p: ID!, $from: DateTime!, $to: DateTime!, $after: String) {
  appointments(practiceId: $p, from: $from, to: $to, first: 20, after: $after) {
    edges { node { id startsAt status patient { id firstName lastName } } } pageInfo { hasNextPage endCursor } } }"""
FEED = """query Feed($p: ID!, $since: String) { appointmentChanges(practiceId: $p, first: 50, since: $since) {
  edges { node { kind appointmentId } } pageInfo { endCursor } } }"""


def _bomb(levels: int, width: int) -> str:
    fragments = ["fragment F0 on Query { viewer { name } }"]
    fragments += [f"fragment F{i} on Query {{ {' '.join([f'...F{i - 1}'] * width)} }}" for i in range(1, levels + 1)]
    return f"{{ ...F{levels} }} " + " ".join(fragments)


HOSTILE = [  # each refused with a 400 naming its limit (tests/security/test_denial_of_service.py has the full table)
    _bomb(40, 2),
    _bomb(8, 20),
    "{ " + "__typename " * 1000 + "}",
    "{ ...A } fragment A on Query { ...B viewer { name } } fragment B on Query { ...A ...A }",
    " ".join(f"query Q{i} {{ viewer {{ name }} }}" for i in range(300)),
    "{ __schema { types { fields { type { fields { type { fields { type { name } } } } } } } } }",
]


@dataclass(frozen=True)
class Partner:
    key: str
    practice_id: str
    other_keys: tuple[str, ...] = ()  # more keys of the same partner (the four-key flood)

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.key, *self.other_keys)


def invalid_key(number: int) -> str:
    """A well-formed key no partner has: only the database can tell, unless something stops it before."""
    return f"pak_{number:012x}_{'x' * 43}"


@dataclass
class Fairness:
    kind: str  # of the flood: one of KINDS
    alone_ms: list[float]
    alone: Counter[str]
    flooded_ms: list[float]
    flooded: Counter[str]
    flood: Counter[str]

    @property
    def ratio(self) -> float:
        return statistics.median(self.flooded_ms) / statistics.median(self.alone_ms)

    @property
    def success(self) -> float:
        """The share of the syncing partner's requests served under the flood."""
        return self.flooded["ok"] / sum(self.flooded.values())

    def problems(self) -> list[str]:
        """What breaks the stated bound, latency aside."""
        problems = []
        if set(self.alone) != {"ok"}:
            problems.append(f"sync requests failed alone: {dict(self.alone)}")
        if self.kind == "expensive" and set(self.flooded) != {"ok"}:
            problems.append(f"sync requests failed under the flood: {dict(self.flooded)}")
        if self.kind != "expensive" and self.success < SUCCESS:
            problems.append(
                f"{self.success:.1%} of sync requests served under the flood (bound {SUCCESS:.0%}): "
                f"{dict(self.flooded)}"
            )
        if self.kind in ("expensive", "four-keys", "invalid-keys") and (
            self.flood["429 RATE_LIMITED"] <= sum(self.flood.values()) / 2
        ):
            problems.append(f"the flooder was not throttled: {dict(self.flood)}")
        if self.kind in ("hostile", "invalid-keys") and any(not outcome.startswith("4") for outcome in self.flood):
            problems.append(f"the flood's requests were not all refused: {dict(self.flood)}")
        if any(outcome.startswith("client error") for outcome in self.flood):
            problems.append(f"flood requests got no answer: {dict(self.flood)}")
        if any(outcome.startswith("5") for outcome in self.flood):
            problems.append(f"server errors under the flood: {dict(self.flood)}")
        return problems

    def summary(self) -> str:
        def figures(samples: list[float]) -> str:
            return f"median {statistics.median(samples):.1f} ms, p90 {statistics.quantiles(samples, n=10)[-1]:.1f} ms"

        return (
            f"sync alone: {figures(self.alone_ms)} ({len(self.alone_ms)} requests, {dict(self.alone)})\n"
            f"sync under the flood: {figures(self.flooded_ms)} ({len(self.flooded_ms)} requests, "
            f"{dict(self.flooded)})\n"
            f"ratio of medians: {self.ratio:.2f} (bound {BOUND if self.kind in LATENCY_BOUNDED else 'none'})\n"
            f"{self.kind} flood: {sum(self.flood.values())} requests from {FLOOD_CONNECTIONS} connections: "
            f"{dict(self.flood)}"
        )


@contextmanager
def served(database_url: str) -> Iterator[str]:
    """`partner-api serve`, one worker, on a free port of 127.0.0.1; yields its base URL once ready."""
    env = partner_api_env(database_url, secret_key="fairness", log_level="warning", graphiql="false")
    with running_server(lambda port: [PARTNER_API, "serve", "--host", LOOPBACK, "--port", str(port)], env) as server:
        yield server.base


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
        codes = {e.get("extensions", {}).get("code") for e in body.get("errors") or []}
        # Served: the page's data, fields outside the grant's reading horizon withheld (FORBIDDEN) as in any sync.
        served = response.status_code == 200 and body.get("data") is not None and codes <= {"FORBIDDEN"}
        outcomes["ok" if served else f"{response.status_code} {','.join(sorted(map(str, codes)))}"] += 1
        return body.get("data") or {}

    since = None
    for _ in range(SYNC_ROUNDS):
        for offset in range(-1, 6):
            start, after = day + timedelta(days=offset), None
            while True:
                variables = {
                    "p": partner.practice_id,
                    "from": start.isoformat(),
                    "to": (start + timedelta(days=1)).isoformat(),
                    "after": after,
                }
                page = (await ask(DAY_PAGE, variables)).get("appointments")
                if not page or not page["pageInfo"]["hasNextPage"]:
                    break
                after = page["pageInfo"]["endCursor"]
        feed = (await ask(FEED, {"p": partner.practice_id, "since": since})).get("appointmentChanges")
        since = feed["pageInfo"]["endCursor"] if feed else None
    return latencies, outcomes


def _flood(base: str, partner: Partner, day: datetime, kind: str, stop: EventType, results: Queue) -> None:
    """In a process of its own, so that its client work does not delay the syncing client's."""
    results.put(asyncio.run(_flood_connections(base, partner, day, kind, stop)))


async def _flood_connections(base: str, partner: Partner, day: datetime, kind: str, stop: EventType) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    sent = itertools.count()
    started = time.monotonic()
    variables = {
        "p": partner.practice_id,
        "from": (day - timedelta(days=1)).isoformat(),
        "to": (day + timedelta(days=2)).isoformat(),
    }
    limits = httpx.Limits(max_connections=FLOOD_CONNECTIONS, max_keepalive_connections=FLOOD_CONNECTIONS)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:

        async def connection(number: int) -> None:
            keys = partner.keys if kind == "four-keys" else partner.keys[:1]
            key = keys[number % len(keys)]  # the four-key flood: each connection one of them
            while (
                not stop.is_set()
                and sum(outcomes.values()) < FLOOD_MAX_REQUESTS
                and time.monotonic() - started < FLOOD_MAX_SECONDS
            ):
                number = next(sent)
                if kind == "hostile":  # a comment makes each document new to the parser's and validation's caches
                    payload = {
                        "query": f"{HOSTILE[number % len(HOSTILE)]}\n# {number}",
                        "operationName": "Q1" if number % len(HOSTILE) == 4 else None,
                    }
                else:
                    payload = {"query": FLOOD, "variables": variables}
                sent_key = invalid_key(number) if kind == "invalid-keys" else key
                try:
                    # the GraphQL-over-HTTP media type: a refused document is a 4xx (with application/json, a 200)
                    headers = {"Authorization": f"Bearer {sent_key}", "Accept": "application/graphql-response+json"}
                    response = await client.post("/graphql", json=payload, headers=headers)
                # counted, and reported by problems(), rather than losing the flood's figures
                except httpx.HTTPError as error:
                    outcomes[f"client error {type(error).__name__}"] += 1
                    continue
                codes = {e["extensions"]["code"] for e in response.json().get("errors", [])}
                outcomes[f"{response.status_code} {','.join(sorted(codes)) or 'ok'}"] += 1

        await asyncio.gather(*(connection(number) for number in range(FLOOD_CONNECTIONS)))
    return outcomes


async def measure(base: str, syncing: Partner, flooding: Partner, day: datetime, kind: str = "expensive") -> Fairness:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        await sync(client, syncing, day)  # warm-up: connections, caches, the partner's budget row
        alone_ms, alone = await sync(client, syncing, day)
        processes = multiprocessing.get_context("spawn")
        stop, results = processes.Event(), processes.Queue()
        flooder = processes.Process(target=_flood, args=(base, flooding, day, kind, stop, results), daemon=True)
        flooder.start()
        try:
            await asyncio.sleep(2.0)  # the flood at full pace, the flooder's budget spent
            flooded_ms, flooded = await sync(client, syncing, day)
        finally:
            stop.set()
            flood = await asyncio.to_thread(results.get, timeout=FLOOD_MAX_SECONDS + 30)
            flooder.join(timeout=30)
    return Fairness(kind, alone_ms, alone, flooded_ms, flooded, flood)


def more_keys(url: str, partner: str, count: int) -> tuple[str, ...]:
    """`count` new keys of the partner, for the four-key flood (open: the flood sends its query's text)."""
    from sqlalchemy.orm import Session

    from api.data.database import make_sync_engine
    from api.data.models import KeyMode
    from api.operators.accounts import issue_partner_key

    engine = make_sync_engine(url)
    try:
        with Session(engine) as session, session.begin():
            issued = (issue_partner_key(session, partner, label="fairness", mode=KeyMode.OPEN) for _ in range(count))
            return tuple(key.token for key in issued)
    finally:
        engine.dispose()


def main() -> None:
    from bench.run import REFERENCE, database_urls, prepare

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--flood", default="all", choices=[*KINDS, "all"])
    args = parser.parse_args()
    kinds = list(KINDS) if args.flood == "all" else [args.flood]
    with ExitStack() as stack:
        url = database_urls(args.db, stack)[args.db]("10k")
        keys = prepare(url, "10k")
        syncing, flooding = (
            Partner(keys[name]["key"], keys[name]["grants"][0]["practice_id"]) for name in ("Logimed", "AgendaPlus")
        )
        flooding = replace(flooding, other_keys=more_keys(url, "AgendaPlus", 3))
        day = datetime.combine(REFERENCE, datetime.min.time(), tzinfo=UTC) + timedelta(days=1)
        results = []
        for kind in kinds:  # a server each: the second flood does not start on the first one's budgets
            with served(url) as base:
                results.append(asyncio.run(measure(base, syncing, flooding, day, kind)))
    problems = []
    for result in results:
        print(result.summary())
        late = result.kind in LATENCY_BOUNDED and result.ratio > BOUND  # the hostile flood: by its success share
        found = result.problems() + ([f"latency ratio {result.ratio:.2f} is past the bound {BOUND}"] if late else [])
        print(
            json.dumps(
                {
                    "flood": result.kind,
                    "ratio": round(result.ratio, 2),
                    "success": round(result.success, 4),
                    "problems": found,
                }
            )
        )
        problems += found
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
