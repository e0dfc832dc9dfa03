"""A worker whose event loop is stuck in synchronous code is replaced, and what it was serving is
recorded in the ledger as refused, while the other worker keeps serving."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.data.models import AccessRecord
from api.identity.keys import split_token
from tests.http.blocking_app import BLOCK_HEADER
from tests.server_process import LOOPBACK, partner_api_env, running_server, wait_for

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 3  # PARTNER_API_WORKER_TIMEOUT_SECONDS of the server under test


@pytest.fixture
def watched_server(database_url, world, tmp_path):
    in_flight = tmp_path / "in-flight"
    in_flight.mkdir()
    env = partner_api_env(
        database_url, secret_key="shared", worker_timeout_seconds=str(TIMEOUT), in_flight_dir=str(in_flight)
    )

    def command(port: int) -> list[str]:
        code = (
            "from api.operators.server import serve; from api.settings import Settings; "
            f"serve(Settings(), '{LOOPBACK}', {port}, 2, 'tests.http.blocking_app:create_app')"
        )
        return [sys.executable, "-c", code]

    with running_server(command, env, cwd=ROOT) as server:
        yield server.base, in_flight
    # The arbiter saw the silent worker, killed it and booted another: three workers in all.
    assert "WORKER TIMEOUT" in server.output and server.output.count("Booting worker") == 3, server.output
    assert "recorded as refused" in server.output, server.output


async def _served(base: str, key: str, count: int) -> list[int]:
    statuses = []
    for _ in range(count):  # a connection each, so that any live worker may take it
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            response = await client.post(
                "/graphql", json={"query": "{ viewer { name } }"}, headers={"Authorization": f"Bearer {key}"}
            )
            statuses.append(response.status_code)
    return statuses


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_blocked_worker_is_replaced_and_its_request_recorded_as_refused(watched_server, world, sync_engine):
    base, in_flight = watched_server
    key = world.keys["full"]
    headers = {"Authorization": f"Bearer {key}", BLOCK_HEADER.decode(): "1"}
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        blocked = asyncio.create_task(client.post("/graphql", json={"query": "{ viewer { name } }"}, headers=headers))
        await asyncio.to_thread(
            wait_for, lambda: any(in_flight.iterdir()), 30, "the blocking request never reached a worker"
        )
        during = await _served(base, key, 5)  # the other worker serves while this one is stuck
        with pytest.raises(httpx.HTTPError):  # no answer: the worker is killed under the request
            await blocked
    after = await _served(base, key, 5)
    assert during == [200] * 5 and after == [200] * 5

    def recorded() -> list[AccessRecord]:
        with Session(sync_engine) as session:
            return list(session.scalars(select(AccessRecord).where(AccessRecord.http_status == 503)))

    await asyncio.to_thread(wait_for, lambda: bool(recorded()), 30, "the lost request was never recorded")
    [lost] = recorded()
    assert lost.outcome == "refused" and lost.error_code == "INTERNAL_SERVER_ERROR"
    assert lost.key_prefix == split_token(key)[0]  # as presented: the arbiter cannot check the secret
    assert not any(in_flight.iterdir()), "the arbiter removed what it recorded"
