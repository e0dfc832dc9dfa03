"""Slow and vanishing clients: a body that does not arrive in time is refused with 408 and its
connection closed; a client that hangs up mid-body is recorded as CLIENT_DISCONNECTED, in the ledger
and the metrics, and never counted as a server error."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.data.models import AccessRecord
from api.http.app import create_app
from api.settings import Settings
from tests.server_process import LOOPBACK, PARTNER_API, partner_api_env, running_server

BODY = json.dumps({"query": "{ viewer { name } }"}).encode()


def records(sync_engine) -> list[tuple[str, str | None, int]]:
    with Session(sync_engine) as session:
        return [
            (r.outcome, r.error_code, r.http_status)
            for r in session.scalars(select(AccessRecord).order_by(AccessRecord.id))
        ]


def counted(code: str) -> float:
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "partner_api_requests"
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels.get("code") == code
    )


async def call(app, key: str, messages: list[dict], then: asyncio.Event | None = None) -> list[dict]:
    """The app as a server drives it: the request's headers, then `messages` from the client, then
    nothing until `then` is set (a client that stays silent), or a disconnect."""
    pending = list(messages)
    sent: list[dict] = []

    async def receive() -> dict:
        if pending:
            return pending.pop(0)
        if then is not None:
            await then.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/graphql",
        "raw_path": b"/graphql",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(BODY)).encode()),
            (b"authorization", f"Bearer {key}".encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)
    return sent


@pytest.fixture
async def app(database_url, world):
    app = create_app(Settings(database_url=database_url, secret_key="x", body_timeout_seconds=0.2))
    yield app
    await app.state.engine.dispose()


async def test_a_body_that_stops_arriving_gets_408_and_the_connection_closed(app, world, sync_engine):
    never = asyncio.Event()  # the client sends half its body, then nothing: only the body timeout ends it
    async with asyncio.timeout(30):  # bounds a failing test only (the body timeout is 0.2 s)
        sent = await call(
            app, world.keys["full"], [{"type": "http.request", "body": BODY[:10], "more_body": True}], then=never
        )
    start, body = sent[0], json.loads(b"".join(m.get("body", b"") for m in sent[1:]))
    assert start["status"] == 408
    assert (b"connection", b"close") in start["headers"]
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT" and error["extensions"]["limit"] == "body_timeout"
    assert records(sync_engine) == [("refused", "BAD_USER_INPUT", 408)]


async def test_a_client_hanging_up_mid_body_is_recorded_as_disconnected_not_as_a_server_error(app, world, sync_engine):
    errors_before, gone_before = counted("INTERNAL_SERVER_ERROR"), counted("CLIENT_DISCONNECTED")
    for _ in range(3):
        await call(app, world.keys["full"], [{"type": "http.request", "body": BODY[:10], "more_body": True}])
    assert records(sync_engine) == [("refused", "CLIENT_DISCONNECTED", 499)] * 3
    assert counted("CLIENT_DISCONNECTED") == gone_before + 3
    assert counted("INTERNAL_SERVER_ERROR") == errors_before


async def test_a_whole_body_is_served_as_usual(app, world):
    sent = await call(app, world.keys["full"], [{"type": "http.request", "body": BODY, "more_body": False}])
    assert sent[0]["status"] == 200


@contextmanager
def serving(database_url: str, **settings: str) -> Iterator[int]:
    """`partner-api serve` on 127.0.0.1 (one worker); yields its port."""
    env = partner_api_env(database_url, secret_key="x", **settings)
    with running_server(lambda port: [PARTNER_API, "serve", "--host", LOOPBACK, "--port", str(port)], env) as server:
        yield server.port


def request_head(key: str) -> bytes:
    return (
        "POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {key}\r\n"
        f"Content-Length: {len(BODY)}\r\n\r\n"
    ).encode()


def read_until_closed(connection: socket.socket) -> bytes:
    received = b""
    while chunk := connection.recv(65536):  # b"" once the server closed the connection
        received += chunk
    return received


def endless(port: int, start: bytes) -> bytes:
    """Sends `start`, then a field value that never ends; the server's answer once it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as connection:
        connection.sendall(start)
        try:
            for _ in range(64):  # 4 MiB at most: the server answers and closes well before
                connection.sendall(b"a" * 65536)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return read_until_closed(connection)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the HTTP server's behaviour, not the database's
def test_a_real_server_cuts_off_a_slow_body_and_records_hang_ups(database_url, world, sync_engine):
    with serving(database_url, body_timeout_seconds="1") as port:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as slow:
            slow.sendall(request_head(world.keys["full"]) + BODY[:10])  # then silence
            answer = read_until_closed(slow)  # the socket timeout only bounds a failing test
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b'"limit":"body_timeout"' in answer.replace(b" ", b"")

        hang_ups = 20
        for _ in range(hang_ups):
            with socket.create_connection(("127.0.0.1", port), timeout=20) as gone:
                gone.sendall(request_head(world.keys["full"]) + BODY[:10])
        for _ in range(500):  # bounded: each hang-up is recorded once the server sees its connection close
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            line = [
                m
                for m in metrics.splitlines()
                if 'code="CLIENT_DISCONNECTED"' in m and m.startswith("partner_api_requests_total")
            ]
            if line and float(line[0].rsplit(" ", 1)[1]) == hang_ups:
                break
        else:
            raise AssertionError(f"hang-ups not all counted: {line}")
        assert 'code="INTERNAL_SERVER_ERROR"' not in metrics
    assert (
        records(sync_engine)
        == [("refused", "BAD_USER_INPUT", 408)] + [("refused", "CLIENT_DISCONNECTED", 499)] * hang_ups
    )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the HTTP server's behaviour, not the database's
def test_a_real_server_bounds_each_request_head_in_size_and_time_and_serves_the_others(database_url, world):
    """A header that never ends used to be buffered by httptools without limit, its work per chunk
    growing with it: one connection held the worker's event loop until the arbiter killed it."""
    with serving(database_url, max_head_bytes="8192", head_timeout_seconds="1") as port:
        answer = endless(port, b"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
        assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
        body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
        assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "limit": "max_head_bytes", "maximum": 8192}

        with socket.create_connection(("127.0.0.1", port), timeout=20) as slow:
            slow.sendall(b"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # then silence, the head unfinished
            answer = read_until_closed(slow)
        assert answer.startswith(b"HTTP/1.1 408") and b'"limit": "head_timeout"' in answer, answer[:300]

        # Many short fields, within the size: each is a call into Python and a scan by every lookup (helper 53).
        head = request_head(world.keys["full"])  # 4 fields
        for fields, status in ((96, b"200"), (97, b"431")):
            padded = head.replace(b"\r\n\r\n", b"\r\n" + b"x: \r\n" * fields + b"\r\n")
            with socket.create_connection(("127.0.0.1", port), timeout=20) as many:
                many.sendall(padded + BODY)
                answer = b""
                while b"}}" not in answer and (chunk := many.recv(65536)):  # the end of a JSON answer
                    answer += chunk
            assert answer.startswith(b"HTTP/1.1 " + status), (fields, answer[:300])
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["errors"][0]["extensions"] == {
            "code": "BAD_USER_INPUT", "limit": "header_fields", "maximum": 100
        }

        # What httptools cannot parse is answered in the API's JSON shape too (it was uvicorn's plain text).
        with socket.create_connection(("127.0.0.1", port), timeout=20) as smuggled:
            smuggled.sendall(
                b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            )
            answer = read_until_closed(smuggled)
        assert answer.startswith(b"HTTP/1.1 400") and b"application/json" in answer, answer[:300]
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"

        # A slow head after a whole request in the same packet (pipelined): its own clock runs.
        with socket.create_connection(("127.0.0.1", port), timeout=20) as pipelined:
            pipelined.sendall(request_head(world.keys["full"]) + BODY + b"POST /graphql HTTP/1.1\r\nHost: x\r\n")
            answer = read_until_closed(pipelined)
        assert answer.startswith(b"HTTP/1.1 200") and b"HTTP/1.1 408" in answer, answer[-300:]

        # Never counted as head: a body arriving with its head, and requests pipelined in one packet.
        padded = json.dumps({"query": "{ viewer { name } }\n#" + "p" * 40_000}).encode()
        length = f"Content-Length: {len(BODY)}".encode()
        head = request_head(world.keys["full"]).replace(length, f"Content-Length: {len(padded)}".encode())
        with socket.create_connection(("127.0.0.1", port), timeout=20) as large:
            large.sendall(head + padded + request_head(world.keys["full"]) + BODY)
            answer = b""
            while answer.count(b'"name"') < 2 and (chunk := large.recv(65536)):
                answer += chunk
        assert answer.count(b"HTTP/1.1 200") == 2, answer[:300]

        # A head within the bound, its headers spread over several packets, and kept-alive requests.
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for _ in range(3):
                served = client.post(
                    "/graphql",
                    content=BODY,
                    headers={
                        "Authorization": f"Bearer {world.keys['full']}",
                        "Content-Type": "application/json",
                        "X-Padding": "p" * 6000,
                    },
                )
                assert served.status_code == 200 and served.json()["data"]["viewer"]["name"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the HTTP server's behaviour, not the database's
def test_a_head_refused_for_its_fields_never_reaches_the_application(database_url, world, sync_engine):
    """httptools parsed on after the 431 to the end of the data: the application was started with the
    first 100 fields, read the key and the body, and recorded the request (a diff review, helper 54)."""
    with serving(database_url) as port:
        head = request_head(world.keys["full"]).replace(b"\r\n\r\n", b"\r\n" + b"x: \r\n" * 120 + b"\r\n")
        with socket.create_connection(("127.0.0.1", port), timeout=20) as refused:
            refused.sendall(head + BODY)
            assert read_until_closed(refused).startswith(b"HTTP/1.1 431")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            headers = {"Authorization": f"Bearer {world.keys['full']}", "Content-Type": "application/json"}
            assert client.post("/graphql", content=BODY, headers=headers).status_code == 200
        time.sleep(1)  # what the application would record of the refused request, recorded by now
    assert records(sync_engine) == [("served", None, 200)]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the HTTP server's behaviour, not the database's
def test_a_real_server_bounds_what_it_reads_outside_a_head_and_a_body_too(database_url, world):
    """An outside review, without a key: idle connections were never timed out (45,000 took every
    descriptor of both workers); a chunked body's trailers, and a chunk's size line, were read without limit,
    at a cost growing with their length; and after a 413 the connection stayed open as long as bytes kept
    coming."""
    with serving(database_url, max_head_bytes="8192", head_timeout_seconds="1", max_body_bytes="1024") as port:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as idle:  # connects, then says nothing
            answer = read_until_closed(idle)
        assert answer.startswith(b"HTTP/1.1 408") and b'"limit": "head_timeout"' in answer, answer[:300]
        with socket.create_connection(("127.0.0.1", port), timeout=20) as dawdling:
            time.sleep(0.6)  # a first byte late does not start the clock again: it ran from the connection
            dawdling.sendall(b"P")
            time.sleep(0.8)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                dawdling.sendall(request_head(world.keys["full"])[1:] + BODY)
            answer = read_until_closed(dawdling)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:300]

        chunked = request_head(world.keys["full"]).replace(
            f"Content-Length: {len(BODY)}".encode(), b"Transfer-Encoding: chunked"
        )
        answer = endless(port, chunked + f"{len(BODY):x}\r\n".encode() + BODY + b"\r\n0\r\nX-Trailer: ")
        assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
        # a chunk's size line that never ends (its extension), first or after a chunk: 10 GB were read;
        # and one-byte chunks, each with a long extension: the framing is bounded per body, not per line
        for framing in (b"5;", b"1\r\n{\r\n5;", b"".join(b"1;" + b"e" * 5000 + b"\r\n \r\n" for _ in range(40))):
            answer = endless(port, chunked + framing)
            assert answer.startswith(b"HTTP/1.1 431"), answer[:200]

        with socket.create_connection(("127.0.0.1", port), timeout=20) as too_large:
            too_large.sendall(chunked + b"800\r\n" + b"a" * 2048 + b"\r\n")
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += too_large.recv(65536)
            assert answer.startswith(b"HTTP/1.1 413") and b"connection: close" in answer.lower(), answer[:300]
            try:
                for _ in range(64):  # more body: never read, the connection ends with the answer
                    too_large.sendall(b"1\r\na\r\n" * 10_000)
            except (BrokenPipeError, ConnectionResetError):
                pass
            read_until_closed(too_large)  # returns: the server closed it

        # A chunked body with a short trailer is served as before.
        with socket.create_connection(("127.0.0.1", port), timeout=20) as fine:
            fine.sendall(chunked + f"{len(BODY):x}\r\n".encode() + BODY + b"\r\n0\r\nX-Sum: 1\r\n\r\n")
            answer = b""
            while b'"name"' not in answer and (chunk := fine.recv(65536)):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200"), answer[:300]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the HTTP server's behaviour, not the database's
def test_a_request_refused_before_its_body_closes_the_connection(database_url, world):
    """An outside review: once an address was screened (429), or the Accept named no type we answer
    (406), the body was never read by the API but uvicorn went on parsing it: 35 GB came on one
    connection. Both refusals close it, as a 413 does."""
    with serving(database_url, failed_requests_per_address="2") as port:
        endless_body = request_head("pak_000000000000_" + "x" * 43).replace(
            f"Content-Length: {len(BODY)}".encode(), b"Content-Length: 1000000000000"
        )
        not_acceptable = endless_body.replace(b"Content-Type: application/json", b"Accept: text/plain")
        answer = endless(port, not_acceptable)
        assert answer.startswith(b"HTTP/1.1 406") and b"connection: close" in answer.lower(), answer[:300]
        with socket.create_connection(("127.0.0.1", port), timeout=20) as bad:  # the address's second failure
            bad.sendall(request_head("pak_000000000000_" + "y" * 43) + BODY)
            assert bad.recv(65536).startswith(b"HTTP/1.1 401")
        answer = endless(port, endless_body)
        assert answer.startswith(b"HTTP/1.1 429") and b"connection: close" in answer.lower(), answer[:300]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the HTTP server's behaviour, not the database's
def test_what_no_route_reads_is_not_read_at_all(database_url, world):
    """An outside review, without a key: routes that never read a body (/healthz, a 405) answered and kept
    the connection, and httptools parsed the body on, unbounded (21 GB in 10 s; or one byte, and the
    connection held forever: 20,000 took every descriptor); blank lines between requests were counted
    nowhere (9.6 GB in 8 s); pipelined requests queued without limit (1.4 GB of memory in 15 s); and
    one-byte chunks cost three Python calls each."""
    with serving(database_url) as port:
        huge = b"POST /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000000000\r\n\r\n"
        answer = endless(port, huge)  # returns: the server closed the connection after its answer
        assert answer.startswith(b"HTTP/1.1 405"), answer[:200]
        health = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        with socket.create_connection(("127.0.0.1", port), timeout=20) as blank:
            blank.sendall(health)
            first = b""
            while b'"ok"}' not in first:  # answered whole, the connection kept
                first += blank.recv(65536)
            assert first.startswith(b"HTTP/1.1 200")
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                for _ in range(64):
                    blank.sendall(b"\r\n" * 32768)
            answer = read_until_closed(blank)
        assert answer.startswith(b"HTTP/1.1 431"), answer[:300]
        with socket.create_connection(("127.0.0.1", port), timeout=20) as pipelined:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                pipelined.sendall(health * 1000)
            answer = read_until_closed(pipelined)
        assert b"HTTP/1.1 429" in answer and answer.count(b"HTTP/1.1 200") < 1000, answer[-300:]
        chunked = request_head(world.keys["full"]).replace(
            f"Content-Length: {len(BODY)}".encode(), b"Transfer-Encoding: chunked"
        )
        answer = endless(port, chunked + b"1\r\n \r\n" * 2000)
        assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
