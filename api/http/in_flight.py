"""Requests in flight, written where the process manager can read them if their worker dies.

A worker whose event loop stops turning (synchronous CPU: a pathological document, a bug) is
killed by gunicorn's arbiter after `PARTNER_API_WORKER_TIMEOUT_SECONDS`; what it was serving
never reaches the ledger from the worker itself. So each `/graphql` request leaves a small file
in `PARTNER_API_IN_FLIGHT_DIR` (set by `partner-api serve`) while it runs: when a worker dies, the
arbiter records each file it left as a refused request (`api.operators.server`). Nothing secret
goes in it: the time, the key's public prefix as presented, the client's address.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from api.errors import ErrorCode
from api.identity.authentication import bearer_token
from api.identity.keys import split_token
from api.ledger.access import AccessEntry
from api.timeutil import utcnow

IN_FLIGHT_DIR = "PARTNER_API_IN_FLIGHT_DIR"


class InFlight:
    """ASGI middleware: a file per `/graphql` request of this worker, removed when it ends."""

    def __init__(self, app: Any, directory: Path) -> None:
        self.app, self.directory = app, directory

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/graphql":
            await self.app(scope, receive, send)
            return
        path = self.directory / f"{os.getpid()}.{uuid.uuid4().hex}.json"
        path.write_text(json.dumps(_draft(scope, utcnow())))
        try:
            await self.app(scope, receive, send)
        finally:
            path.unlink(missing_ok=True)


def _draft(scope: dict[str, Any], now: datetime) -> dict[str, Any]:
    headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope.get("headers", ())}
    token = bearer_token(headers.get("authorization"))
    parts = split_token(token) if token else None
    client = scope.get("client")
    return {
        "at": now.isoformat(),
        "key_prefix": parts[0] if parts else None,
        "client_address": client[0] if client else None,
    }


def lost(directory: Path, pid: int, now: datetime) -> tuple[list[AccessEntry], list[Path]]:
    """What the dead worker `pid` was serving, as refused ledger entries, and the files to remove."""
    entries, files = [], sorted(directory.glob(f"{pid}.*.json"))
    for path in files:
        try:
            draft = json.loads(path.read_text())
        except (OSError, ValueError):  # cut short as the worker died: recorded without its details
            draft = {"at": now.isoformat(), "key_prefix": None, "client_address": None}
        at = datetime.fromisoformat(draft["at"])
        entries.append(
            AccessEntry(
                request_id=path.name.split(".")[1],
                at=at,
                partner_id=None,
                key_id=None,
                key_prefix=draft["key_prefix"],
                operation_name=None,
                query=None,
                outcome="refused",
                error_code=ErrorCode.INTERNAL_SERVER_ERROR.value,
                http_status=503,
                requested_cost=None,
                actual_cost=None,
                duration_ms=round((now - at).total_seconds() * 1000, 3),
                client_address=draft["client_address"],
            )
        )
    return entries, files


__all__ = ["IN_FLIGHT_DIR", "InFlight", "lost"]
