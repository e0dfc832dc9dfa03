"""What OAuth access-token validation adds to a page, as ratios against an API key in the same run.

One 50-appointment page (patients with identity and contact, practitioners) of the test world's
practice A, on a fresh SQLite database (or PostgreSQL with `--postgres-url`), served in process
through the whole app. The variants take turns request by request, so that the machine's noise
falls on all of them alike:

- `api key`: `Authorization: Bearer pak_…` (the baseline);
- `bearer token`: an access token (signature, claims, its client read as a key is);
- `DPoP token`: a DPoP-bound token with a fresh proof per request (the proof's signature and its
  `jti` inserted in the replay cache: a write per request). Proofs are signed before the clock
  starts: what a client spends is not the server's.

`python -m bench.oauth [--iterations 200] [--postgres]` prints medians and p90 in ms and each
variant's ratio to the key, and writes `bench/results/oauth-<database>.md`. `--postgres` uses
`PARTNER_API_TEST_POSTGRES_URL`'s server when set, else a throwaway one (tests/postgres_server.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from api.data.database import make_sync_engine
from api.data.migrate import upgrade
from api.http.app import create_app
from api.settings import Settings
from tests.oauth_client import GRAPHQL_URL, TOKEN_URL, DPoPKey, SigningKey, claims, register, token_form
from tests.world import build_world, window_args

PAGE = """query Page($p: ID!, $from: DateTime!, $to: DateTime!) {
  appointments(practiceId: $p, from: $from, to: $to, first: 50) {
    edges { node { id startsAt status patient { firstName lastName phone } practitioner { lastName } } } } }"""
RESULTS = Path(__file__).parent / "results"


async def _measure(iterations: int, database_url: str) -> dict[str, list[float]]:
    engine = make_sync_engine(database_url)
    upgrade(engine)
    world = build_world(engine, appointments_per_practice=50)
    key = SigningKey("bench")
    client_id = register(engine, "full", key)
    engine.dispose()
    # Budgets lifted: they would refuse the run, and they cost the same to every variant.
    settings = Settings(
        database_url=database_url, secret_key="bench", budget_capacity=10**9, budget_refill_per_second=10**6
    )
    app = create_app(settings)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
    payload = {"query": PAGE, "variables": {"p": world.practice_id("A"), **window_args()}}

    async def token(dpop: DPoPKey | None) -> str:
        headers = {"DPoP": dpop.proof("POST", TOKEN_URL)} if dpop else {}
        response = await http.post("/oauth/token", data=token_form(key.sign(claims(client_id))), headers=headers)
        response.raise_for_status()
        return str(response.json()["access_token"])

    dpop = DPoPKey()
    bearer, bound = await token(None), await token(dpop)

    def headers_of(name: str) -> Callable[[], dict[str, str]]:
        return {
            "api key": lambda: {"Authorization": f"Bearer {world.keys['full']}"},
            "bearer token": lambda: {"Authorization": f"Bearer {bearer}"},
            "DPoP token": lambda: {"Authorization": f"DPoP {bound}", "DPoP": dpop.proof("POST", GRAPHQL_URL, bound)},
        }[name]

    variants = ["api key", "bearer token", "DPoP token"]
    samples: dict[str, list[float]] = {name: [] for name in variants}

    async def once(name: str) -> float:
        headers = headers_of(name)()  # signed before the clock starts
        began = time.perf_counter()
        response = await http.post("/graphql", json=payload, headers=headers)
        elapsed = (time.perf_counter() - began) * 1000
        body: dict[str, Any] = response.json()
        edges = body.get("data", {}).get("appointments", {}).get("edges") if response.status_code == 200 else None
        if not edges or len(edges) != 50 or body.get("errors"):
            raise SystemExit(f"{name}: the page was not served whole: {response.status_code} {str(body)[:300]}")
        return elapsed

    for name in variants:  # warm-up: caches, the signing key, connections
        for _ in range(5):
            await once(name)
    for _ in range(iterations):
        for name in variants:
            samples[name].append(await once(name))
    await http.aclose()
    await app.state.engine.dispose()
    return samples


def _table(samples: dict[str, list[float]], database: str, iterations: int) -> str:
    base = statistics.median(samples["api key"])
    lines = [
        f"One 50-appointment page, {iterations} turns per variant, {database}, in process "
        f"(`python -m bench.oauth --iterations {iterations}`).",
        "",
        "| credential | median ms | p90 ms | x api key (median) |",
        "| --- | --- | --- | --- |",
    ]
    for name, values in samples.items():
        median, p90 = statistics.median(values), statistics.quantiles(values, n=10)[-1]
        lines.append(f"| {name} | {median:.1f} | {p90:.1f} | {median / base:.2f} |")
    return "\n".join(lines) + "\n"


@contextmanager
def _postgres_database() -> Iterator[str]:
    """A fresh database on the test suite's server when it names one, else on a throwaway one."""
    from tests.postgres_server import postgres_server

    with ExitStack() as stack:
        admin = os.environ.get("PARTNER_API_TEST_POSTGRES_URL") or stack.enter_context(postgres_server())
        name = f"oauth_{secrets.token_hex(4)}"
        admin_engine = make_sync_engine(admin).execution_options(isolation_level="AUTOCOMMIT")
        with admin_engine.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {name}"))
        try:
            yield admin.rsplit("/", 1)[0] + f"/{name}"
        finally:
            with admin_engine.connect() as connection:
                connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            admin_engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL instead of a SQLite file")
    args = parser.parse_args()
    with ExitStack() as stack:
        if args.postgres:
            url = stack.enter_context(_postgres_database())
        else:
            url = f"sqlite:///{stack.enter_context(tempfile.TemporaryDirectory())}/oauth.db"
        samples = asyncio.run(_measure(args.iterations, url))
    database = "PostgreSQL" if args.postgres else "SQLite"
    table = _table(samples, database, args.iterations).replace(
        f"--iterations {args.iterations}`", f"--iterations {args.iterations}{' --postgres' if args.postgres else ''}`"
    )
    print(table)
    (RESULTS / f"oauth-{database.lower()}.md").write_text(table)


if __name__ == "__main__":
    main()
