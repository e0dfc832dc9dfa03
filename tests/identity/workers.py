"""Apps as workers on one database, for the key cache's tests (api/identity/principal_cache.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from api.identity.principal_cache import Notifications
from tests.client import ApiClient


def app_of(client: ApiClient) -> Any:
    return client.http._transport.app  # type: ignore[attr-defined]


def notifications(client: ApiClient) -> Notifications | None:
    freshness = app_of(client).state.principals.freshness
    return freshness if isinstance(freshness, Notifications) else None


async def heard(clients: list[ApiClient], change: Callable[[], object]) -> None:
    """Makes a change in the database, then waits until every worker heard of it: on PostgreSQL, its
    notification (a notification is delivered a moment after the commit; without one, this fails);
    SQLite's workers read the version row on their next request."""
    before = [(listener, listener.generation) for c in clients if (listener := notifications(c)) is not None]
    change()
    async with asyncio.timeout(10):
        while any(listener.generation == generation for listener, generation in before):
            await asyncio.sleep(0.005)
