"""Production shape: two worker processes on one PostgreSQL share one budget (and one ledger)."""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.data.models import AccessRecord

CAPACITY, COST = 300, 55  # each request below reserves 55 points; refill is negligible
PAGE = """query($p: ID!, $from: DateTime!, $to: DateTime!) {
  appointments(practiceId: $p, from: $from, to: $to, first: 5) {
    edges { node { id reason patient { firstName lastName gender birthDate phone email } practitioner { id }
practice { id } } } } }"""


@contextmanager
def serving_two_workers(database_url: str, **settings: str) -> Iterator[str]:
    """`partner-api serve --workers 2` on the database, with PARTNER_API_* settings; yields its base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "PARTNER_API_DATABASE_URL": database_url,
        "PARTNER_API_SECRET_KEY": "shared",
        **{f"PARTNER_API_{name.upper()}": value for name, value in settings.items()},
    }
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "partner-api"),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "2",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            raise RuntimeError("the two workers did not start")
        yield base
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert output.count("Started server process") == 2, output


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
