import pytest

from api.app import create_app
from api.settings import Settings
from tests.client import ApiClient
from tests.world import World, build_world


@pytest.fixture
def world(sync_engine) -> World:
    return build_world(sync_engine)


@pytest.fixture
async def api(database_url, world):
    app = create_app(Settings(database_url=database_url, secret_key="test-secret"))
    client = ApiClient(app)
    yield client
    await client.close()
    await app.state.engine.dispose()
