import pytest

from api.app import create_app
from api.settings import Settings
from tests.client import ApiClient
from tests.world import World, build_world


@pytest.fixture
def world(sync_engine) -> World:
    return build_world(sync_engine)


@pytest.fixture
async def make_api(database_url, world):
    """An in-process API on the test database, with settings overridden as a test needs."""
    clients = []

    def make(**overrides) -> ApiClient:
        app = create_app(Settings(database_url=database_url, secret_key="test-secret", **overrides))
        clients.append((ApiClient(app), app))
        return clients[-1][0]

    yield make
    for client, app in clients:
        await client.close()
        await app.state.engine.dispose()


@pytest.fixture
async def api(make_api) -> ApiClient:
    return make_api()
