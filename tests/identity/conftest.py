"""Fixtures of the identity tests."""

from __future__ import annotations

from typing import Any

import pytest

from tests.client import ApiClient
from tests.identity.workers import app_of, notifications
from tests.oauth_client import SigningKey, register


@pytest.fixture
def client_key() -> SigningKey:
    """An OAuth client's assertion key."""
    return SigningKey("key-1")


@pytest.fixture
def client_id(sync_engine, world, client_key) -> str:
    """A client of partner `full`, registered with `client_key`."""
    return register(sync_engine, "full", client_key)


@pytest.fixture
async def workers(make_api):
    """`make(n, **settings)`: n apps on the test's database, as n workers, each listening (on PostgreSQL)."""
    started: list[ApiClient] = []

    async def make(n: int = 2, **overrides: Any) -> list[ApiClient]:
        clients = [make_api(**overrides) for _ in range(n)]
        for client in clients:
            await app_of(client).state.principals.start()  # as the app's lifespan does
            started.append(client)
            if (listener := notifications(client)) is not None:
                await listener.wait_listening(10)
        return clients

    yield make
    for client in started:
        await app_of(client).state.principals.stop()
