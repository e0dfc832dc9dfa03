"""SIGTERM to `partner-api serve` (an orchestrator stopping a pod, a deploy): the server stops accepting
connections, the request in flight is finished and answered, its ledger row is written, then the process exits.

The request is held in flight by its body: the client sends the headers and half the body, the server is
signalled, and once new connections are refused the client sends the rest. gunicorn's arbiter gives its
workers `graceful_timeout` (the request timeout + 5 s, api/operators/server.py) to finish before killing them.
"""

from __future__ import annotations

import json
import signal
import socket

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.data.models import AccessRecord
from api.identity.keys import split_token
from tests.server_process import LOOPBACK, PARTNER_API, partner_api_env, running_server, wait_for

QUERY = "query InFlight { viewer { name } }"


def _refuses_connections(port: int) -> bool:
    try:
        socket.create_connection((LOOPBACK, port), timeout=1).close()
    except OSError:
        return True
    return False


def _response(connection: socket.socket) -> tuple[int, dict[str, object]]:
    received = b""
    while chunk := connection.recv(65536):  # the server closes the connection after answering: it is stopping
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def one_worker(port: int) -> list[str]:
    return [PARTNER_API, "serve", "--host", LOOPBACK, "--port", str(port), "--workers", "1"]


@pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_sigterm_finishes_the_request_in_flight_records_it_and_exits(database_url, world, sync_engine):
    env = partner_api_env(database_url, secret_key="shared", body_timeout_seconds="60")
    body = json.dumps({"query": QUERY, "operationName": "InFlight"}).encode()
    head = (
        f"POST /graphql HTTP/1.1\r\nHost: {LOOPBACK}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {world.keys['full']}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()

    with running_server(one_worker, env) as server:
        assert server.process is not None
        with socket.create_connection((LOOPBACK, server.port), timeout=30) as connection:
            connection.sendall(head + body[: len(body) // 2])
            server.process.send_signal(signal.SIGTERM)
            wait_for(lambda: _refuses_connections(server.port), 30, "the server still accepts connections")
            assert server.process.poll() is None  # still running: the request is not finished
            connection.sendall(body[len(body) // 2 :])
            status, answer = _response(connection)
        assert status == 200 and answer["data"] == {"viewer": {"name": "full"}}
        assert server.process.wait(timeout=60) == 0
    assert "Shutting down" in server.output or "Handling signal: term" in server.output, server.output
    with Session(sync_engine) as session:
        (record,) = session.scalars(select(AccessRecord).where(AccessRecord.operation_name == "InFlight"))
    prefix = split_token(world.keys["full"])[0]
    assert (record.outcome, record.http_status, record.key_prefix) == ("served", 200, prefix)


def test_the_server_exits_cleanly_when_idle(database_url, world):
    """Without a request in flight, SIGTERM stops it at once, with exit status 0."""
    env = partner_api_env(database_url, secret_key="shared")
    with running_server(lambda port: [PARTNER_API, "serve", "--port", str(port)], env) as server:
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=30) == 0


def test_a_request_still_running_past_the_grace_period_is_recorded_as_refused(
    database_url, world, sync_engine, tmp_path
):
    """Its worker is killed once the grace period is over (1 + 5 s here): the arbiter records what it was
    serving, from the file the request left in the in-flight directory (api/http/in_flight.py)."""
    env = partner_api_env(
        database_url,
        secret_key="shared",
        body_timeout_seconds="600",
        request_timeout_seconds="1",
        in_flight_dir=str(tmp_path),
    )
    head = (
        f"POST /graphql HTTP/1.1\r\nHost: {LOOPBACK}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {world.keys['full']}\r\nContent-Length: 1000\r\n\r\n{{"
    ).encode()

    with running_server(one_worker, env) as server:
        assert server.process is not None
        with socket.create_connection((LOOPBACK, server.port), timeout=60) as connection:
            connection.sendall(head)  # and never the rest: the request outlives the grace period
            wait_for(lambda: any(tmp_path.glob("*.json")), 30, "the request never reached the worker")
            server.process.send_signal(signal.SIGTERM)
            assert server.process.wait(timeout=60) == 0
    prefix = split_token(world.keys["full"])[0]
    with Session(sync_engine) as session:
        (record,) = session.scalars(select(AccessRecord).where(AccessRecord.key_prefix == prefix))
    assert (record.outcome, record.http_status) == ("refused", 503), server.output
