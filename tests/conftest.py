"""Test databases: every test that takes `database_url` runs on SQLite and on PostgreSQL.

Each database gets the schema from the alembic migrations once, as a template; each test
then gets its own copy (a file copy on SQLite, CREATE DATABASE ... TEMPLATE on PostgreSQL).
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, make_url, text

from api.app import create_app
from api.database import make_sync_engine
from api.migrate import upgrade
from api.settings import Settings
from tests.client import ApiClient
from tests.postgres_server import postgres_server
from tests.world import World, build_world

TEMPLATE = "partner_api_template"
_numbers = itertools.count()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    engine = make_sync_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return str(path)


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    external = os.environ.get("PARTNER_API_TEST_POSTGRES_URL")
    if external:
        yield external
        return
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def postgres_template(postgres_admin_url) -> str:
    admin = make_sync_engine(postgres_admin_url).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"DROP DATABASE IF EXISTS {TEMPLATE}"))
        connection.execute(text(f"CREATE DATABASE {TEMPLATE}"))
    admin.dispose()
    engine = make_sync_engine(make_url(postgres_admin_url).set(database=TEMPLATE))
    upgrade(engine)
    engine.dispose()
    return TEMPLATE


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        path = tmp_path / "test.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    admin_url = request.getfixturevalue("postgres_admin_url")
    template = request.getfixturevalue("postgres_template")
    name = f"test_{os.getpid()}_{next(_numbers)}"
    admin = make_sync_engine(admin_url).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name} TEMPLATE {template}"))
    yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture
def sync_engine(database_url) -> Iterator[Engine]:
    engine = make_sync_engine(database_url)
    yield engine
    engine.dispose()


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
