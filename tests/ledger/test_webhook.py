"""The operators' webhook: every alert reaches a real HTTP receiver on 127.0.0.1, signed per
Standard Webhooks, once, even when the receiver is down for a while; and no patient is in it."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from standardwebhooks import Webhook

from api.data.database import make_async_engine, make_session_factory
from api.data.models import AlertDelivery, Grant
from api.ledger.webhook import BACKOFF_BASE, WebhookSender
from api.settings import Settings
from api.timeutil import utcnow
from tests.world import window_args

SECRET = "whsec_" + base64.b64encode(b"operators-webhook-test-secret!!").decode()
PAGE = """query($p: ID!, $from: DateTime!, $to: DateTime!) { appointments(practiceId: $p, from: $from, to: $to,
first: 6) {
  edges { node { patient { firstName lastName phone } } } } }"""


class Receiver:
    """A tiny webhook receiver: records each request, answers 204, and signals each arrival."""

    def __init__(self, port: int) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()
                receiver.arrived.set()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def port() -> int:
    return _free_port()


@pytest.fixture
def receiver(port) -> Iterator[Receiver]:
    started = Receiver(port)
    yield started
    started.close()


def _settings(database_url: str, port: int) -> Settings:
    return Settings(
        database_url=database_url,
        secret_key="test-secret",
        alert_webhook_url=f"http://127.0.0.1:{port}/alerts",
        alert_webhook_secret=SECRET,
    )


async def _refused_once(make_api, world, sync_engine, **settings) -> None:
    """A refusal at practice A: a refusal alert and a quarantine alert, each with its outbox row."""
    with Session(sync_engine) as session, session.begin():
        session.execute(update(Grant).values(max_patients_per_window=1))
    api = make_api(**settings)
    response = await api.query(world.keys["full"], PAGE, {"p": world.practice_id("A"), **window_args()})
    assert "EXTRACTION_LIMIT_EXCEEDED" in response.codes


def _verified(received: list[tuple[dict[str, str], bytes]]) -> list[dict]:
    return [Webhook(SECRET).verify(body, headers) for headers, body in received]


async def test_a_receiver_that_is_down_then_back_gets_each_alert_once_signed(
    make_api, world, sync_engine, database_url, port
):
    await _refused_once(make_api, world, sync_engine)
    engine = make_async_engine(database_url)
    now = [utcnow()]
    sender = WebhookSender(_settings(database_url, port), make_session_factory(engine), clock=lambda: now[0])
    try:
        down = await sender.deliver_due()  # nothing listens on the port yet
        assert (down.delivered, down.failed) == (0, 2)
        assert (await sender.deliver_due()).failed == 0  # not due again before its backoff
        receiver = Receiver(port)
        try:
            now[0] += BACKOFF_BASE
            back = await sender.deliver_due()
            assert (back.delivered, back.failed) == (2, 0)
            assert (await sender.deliver_due()).delivered == 0  # delivered once
            bodies = _verified(receiver.received)
        finally:
            receiver.close()
    finally:
        await engine.dispose()
    assert [b["type"] for b in bodies] == ["extraction.refusal", "extraction.quarantine"]
    refusal = bodies[0]["data"]
    assert refusal["partner"] == "full" and refusal["practiceId"] == world.practice_id("A")
    assert (refusal["count"], refusal["refused"], refusal["threshold"], refusal["windowHours"]) == (0, 3, 1, 24)
    assert refusal["keyPrefix"] == world.keys["full"].split("_")[1]
    # No personal data: no name, phone, e-mail nor patient id of the world is anywhere in the bodies.
    text = json.dumps(bodies)
    assert "pat_" not in text and "Prénom" not in text and "Nom" not in text and "+336" not in text
    with Session(sync_engine) as session:
        rows = session.scalars(select(AlertDelivery)).all()
    assert all(r.delivered_at is not None and r.attempts == 2 for r in rows)


async def test_a_forged_or_altered_body_fails_verification(make_api, world, sync_engine, database_url, receiver, port):
    await _refused_once(make_api, world, sync_engine)
    engine = make_async_engine(database_url)
    try:
        await WebhookSender(_settings(database_url, port), make_session_factory(engine)).deliver_due()
    finally:
        await engine.dispose()
    headers, body = receiver.received[0]
    assert _verified([(headers, body)])
    with pytest.raises(Exception, match="signature"):
        Webhook(SECRET).verify(body.replace(b'"full"', b'"else"'), headers)


async def test_the_app_sends_a_new_alert_at_once_in_the_background(
    make_api, world, sync_engine, database_url, receiver, port
):
    api = make_api(
        alert_webhook_url=f"http://127.0.0.1:{port}/alerts",
        alert_webhook_secret=SECRET,
        alert_webhook_poll_seconds=3600,
    )
    app = api.http._transport.app  # type: ignore[attr-defined]
    background = asyncio.create_task(app.state.alert_sender.run())
    try:
        with Session(sync_engine) as session, session.begin():
            session.execute(update(Grant).values(max_patients_per_window=1))
        response = await api.query(world.keys["full"], PAGE, {"p": world.practice_id("A"), **window_args()})
        assert "EXTRACTION_LIMIT_EXCEEDED" in response.codes
        # Woken by the alert itself (the poll interval is an hour): wait for the receiver's signal.
        assert await asyncio.to_thread(receiver.arrived.wait, 30)
    finally:
        background.cancel()
    assert _verified(receiver.received)[0]["type"] == "extraction.refusal"


async def test_alerts_deliver_on_the_command_line(
    make_api, world, sync_engine, database_url, receiver, port, monkeypatch
):
    from typer.testing import CliRunner

    from api.operators.cli import app
    from api.settings import get_settings

    await _refused_once(make_api, world, sync_engine)
    for name, value in {
        "DATABASE_URL": database_url,
        "ALERT_WEBHOOK_URL": f"http://127.0.0.1:{port}/a",
        "ALERT_WEBHOOK_SECRET": SECRET,
    }.items():
        monkeypatch.setenv(f"PARTNER_API_{name}", value)
    get_settings.cache_clear()
    try:
        # Off the test's event loop, as an operator's shell would run it.
        result = await asyncio.to_thread(CliRunner().invoke, app, ["alerts", "deliver"])
        assert result.exit_code == 0, result.output
        assert "delivered 2 alert(s)" in result.output
        listed = json.loads(CliRunner().invoke(app, ["alerts", "--format", "json"]).output)
    finally:
        get_settings.cache_clear()
    assert [(a["kind"], a["delivery"]) for a in listed] == [("refusal", "delivered"), ("quarantine", "delivered")]
    assert len(receiver.received) == 2
