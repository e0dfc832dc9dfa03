"""Test databases: every test that takes `database_url` runs on SQLite and on PostgreSQL.

The alembic migrations build each database's schema once, into a template; each test then gets
its own copy (a file copy on SQLite, CREATE DATABASE ... TEMPLATE on PostgreSQL), so tests are
isolated and no test pays for the migrations. Test ids name the database: `[sqlite]`,
`[postgresql]`; `-m "not postgres"` runs the SQLite half alone.

PostgreSQL is a throwaway server started for the session (tests/postgres_server.py), or the
server at PARTNER_API_TEST_POSTGRES_URL (a superuser URL: the tests create databases). When it
cannot start, the PostgreSQL tests fail: they never skip.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from functools import cached_property
from pathlib import Path

import pytest
from sqlalchemy import Engine, make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner, Result

from api.clock import Clock, system_clock
from api.data.database import make_async_engine, make_sync_engine
from api.data.migrate import upgrade
from api.http.app import create_app
from api.operators.cli import app as cli_app
from api.settings import Settings, get_settings
from tests import engine_conformance
from tests.client import ApiClient
from tests.postgres_server import postgres_server
from tests.world import World, build_world

DATABASES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]


class SqliteDatabases:
    """Database files in one directory; migrated ones are copies of a migrated template."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._numbers = itertools.count()

    @cached_property
    def template(self) -> Path:
        path = self.directory / "template.db"
        engine = make_sync_engine(f"sqlite:///{path}")
        upgrade(engine)
        engine.dispose()  # the last connection to close checkpoints the WAL: the file is complete
        return path

    def create(self, migrated: bool) -> str:
        path = self.directory / f"test_{next(self._numbers)}.db"
        if migrated:
            shutil.copyfile(self.template, path)
        return f"sqlite:///{path}"

    def drop(self, url: str) -> None:
        path = make_url(url).database
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


class PostgresDatabases:
    """Databases on one server; migrated ones are created from a migrated template database."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = make_url(admin_url)
        self.admin = make_sync_engine(admin_url).execution_options(isolation_level="AUTOCOMMIT")
        self.prefix = f"partner_api_test_{os.getpid()}"  # several runs may share an external server
        self._numbers = itertools.count()

    def _execute(self, sql: str) -> None:
        with self.admin.connect() as connection:
            connection.execute(text(sql))

    def _url(self, name: str) -> str:
        return self.admin_url.set(database=name).render_as_string(hide_password=False)

    @cached_property
    def template(self) -> str:
        name = f"{self.prefix}_template"
        self._execute(f"DROP DATABASE IF EXISTS {name}")
        self._execute(f"CREATE DATABASE {name}")
        engine = make_sync_engine(self._url(name))
        upgrade(engine)
        engine.dispose()  # CREATE DATABASE ... TEMPLATE needs the template without connections
        return name

    @cached_property
    def _strategy(self) -> str:
        with self.admin.connect() as connection:
            version = connection.dialect.server_version_info or (0,)
        # A file copy is four times faster than the WAL-logged default (PostgreSQL 15+) for a small template.
        return " STRATEGY = FILE_COPY" if version >= (15,) else ""

    def create(self, migrated: bool) -> str:
        name = f"{self.prefix}_{next(self._numbers)}"
        self._execute(f"CREATE DATABASE {name} TEMPLATE {self.template if migrated else 'template0'}{self._strategy}")
        return self._url(name)

    def drop(self, url: str) -> None:
        self._execute(f"DROP DATABASE IF EXISTS {make_url(url).database} WITH (FORCE)")

    def close(self) -> None:
        if "template" in self.__dict__:
            self._execute(f"DROP DATABASE IF EXISTS {self.template} WITH (FORCE)")
        self.admin.dispose()


@pytest.fixture(scope="session")
def sqlite_databases(tmp_path_factory: pytest.TempPathFactory) -> SqliteDatabases:
    return SqliteDatabases(tmp_path_factory.mktemp("sqlite"))


@pytest.fixture(scope="session")
def postgresql_databases() -> Iterator[PostgresDatabases]:
    external = os.environ.get("PARTNER_API_TEST_POSTGRES_URL")
    if external:
        databases = PostgresDatabases(external)
        yield databases
        databases.close()
        return
    with postgres_server() as url:
        databases = PostgresDatabases(url)
        yield databases
        databases.close()


def _database(request: pytest.FixtureRequest, migrated: bool) -> Iterator[str]:
    databases = request.getfixturevalue(f"{request.param}_databases")
    url = databases.create(migrated)
    yield url
    databases.drop(url)


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database with the schema of the migrations at head, for one test."""
    yield from _database(request, migrated=True)


@pytest.fixture(params=DATABASES)
def empty_database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database without any table, for one test."""
    yield from _database(request, migrated=False)


@pytest.fixture
def sync_engine(database_url: str) -> Iterator[Engine]:
    engine = make_sync_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
async def async_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_async_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def world(sync_engine: Engine) -> World:
    return build_world(sync_engine)


@pytest.fixture
async def make_api(database_url, world):
    """An in-process API on the test database, with settings overridden as a test needs."""
    clients = []

    def make(clock: Clock = system_clock, **overrides) -> ApiClient:
        app = create_app(Settings(database_url=database_url, **{"secret_key": "test-secret", **overrides}), clock=clock)
        clients.append((ApiClient(app), app))
        return clients[-1][0]

    yield make
    for client, app in clients:
        await client.close()
        await app.state.engine.dispose()


@pytest.fixture
async def api(make_api) -> ApiClient:
    return make_api()


@pytest.fixture
def cli(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Result]]:
    """The `partner-api` command line on the test's database."""
    monkeypatch.setenv("PARTNER_API_DATABASE_URL", database_url)
    monkeypatch.setenv("PARTNER_API_SECRET_KEY", "test-secret")  # the servers' (make_api): it seals signing keys
    get_settings.cache_clear()
    runner = CliRunner()
    yield lambda *args: runner.invoke(cli_app, list(args))
    get_settings.cache_clear()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`-m engine_conformance`: the suite a replacement of oso must pass (tests/engine_conformance.py)."""
    root = config.rootpath
    for item in items:
        if item.path.relative_to(root).as_posix() in engine_conformance.MODULES:
            item.add_marker(engine_conformance.MARKER)
