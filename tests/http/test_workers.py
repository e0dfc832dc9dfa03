"""Production shape: two worker processes on one PostgreSQL share one budget (and one ledger)."""

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from api.data.models import AccessRecord
from tests.server_process import LOOPBACK, PARTNER_API, partner_api_env, running_server

CAPACITY, COST = 300, 55  # each request below reserves 55 points; refill is negligible
PAGE = """query($p: ID!, $from: DateTime!, $to: DateTime!) {
  appointments(practiceId: $p, from: $from, to: $to, first: 5) {
    edges { node { id reason patient { firstName lastName gender birthDate phone email } practitioner { id }
practice { id } } } } }"""


@contextmanager
def serving_two_workers(database_url: str, **settings: str) -> Iterator[str]:
    """`partner-api serve --workers 2` on the database, with PARTNER_API_* settings; yields its base URL."""
    env = partner_api_env(database_url, secret_key="shared", **settings)

    def command(port: int) -> list[str]:
        return [PARTNER_API, "serve", "--host", LOOPBACK, "--port", str(port), "--workers", "2"]

    with running_server(command, env) as server:
        yield server.base
    assert server.output.count("Started server process") == 2, server.output


@pytest.fixture
def two_workers(database_url, world):
    with serving_two_workers(database_url, budget_capacity=str(CAPACITY), budget_refill_per_second="0.001") as base:
        yield base


# Several workers share their state through PostgreSQL; SQLite is the single-process default.
@pytest.mark.parametrize("database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
async def test_a_budget_is_enforced_across_two_workers(two_workers, world, sync_engine):
    from tests.world import window_args

    payload = {"query": PAGE, "variables": {"p": world.practice_id("A"), **window_args()}}
    headers = {"Authorization": f"Bearer {world.keys['full']}"}
    statuses = []
    # Separate connections, so that the load balancer in uvicorn spreads them over both workers.
    for _ in range(20):
        async with httpx.AsyncClient(base_url=two_workers, timeout=30) as client:
            statuses.append((await client.post("/graphql", json=payload, headers=headers)).status_code)
    served, limited = statuses.count(200), statuses.count(429)
    # Each served request spends its actual cost (5 rows x 11 = 55): the shared bucket allows 5.
    assert served == CAPACITY // COST and limited == len(statuses) - served, statuses
    with Session(sync_engine) as session:
        assert session.scalar(select(func.count()).select_from(AccessRecord)) == len(statuses)
    # /metrics sums both workers' counts (it was empty: prometheus_client chose in-memory values in the arbiter).
    metrics = httpx.get(f"{two_workers}/metrics", timeout=10).text.splitlines()
    full = [line for line in metrics if line.startswith("partner_api_requests_total{") and 'partner="full"' in line]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in full) == len(statuses), metrics


@pytest.mark.parametrize("database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
async def test_a_key_revoked_while_both_workers_cache_it_is_refused_by_both(database_url, world, sync_engine):
    """The key cache in real workers (api/identity/principal_cache.py): each listens from its lifespan."""
    import asyncio

    from api.operators import accounts

    key = world.keys["full"]
    headers = {"Authorization": f"Bearer {key}"}

    async def statuses(base: str) -> list[int]:
        answered = []
        for _ in range(12):  # separate connections: both workers answer, and keep the key
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                response = await client.post("/graphql", json={"query": "{ viewer { name } }"}, headers=headers)
                answered.append(response.status_code)
        return answered

    env = partner_api_env(database_url, secret_key="shared")

    def command(port: int) -> list[str]:
        return [PARTNER_API, "serve", "--host", LOOPBACK, "--port", str(port), "--workers", "2"]

    with running_server(command, env) as server:
        base = server.base
        for _ in range(200):  # each worker's listener, in `pg_stat_activity` (read anew: it is a snapshot)
            with sync_engine.connect() as connection:
                listening = connection.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'partner-api principals'")
                ).scalar_one()
            if listening == 2:
                break
            await asyncio.sleep(0.05)
        assert listening == 2, server.log.read_text()[-3000:]
        assert set(await statuses(base)) == {200}
        with Session(sync_engine) as session, session.begin():
            accounts.revoke_key(session, key.split("_")[1])
        assert set(await statuses(base)) == {401}
