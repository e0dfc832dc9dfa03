"""Alembic environment: migrates the database named by PARTNER_API_DATABASE_URL (or -x url=...)."""

from typing import Any

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection, Engine

from api.data.database import make_sync_engine
from api.data.models import Base
from api.ledger.partitions import PARTITION_NAME
from api.settings import get_settings
from api.timeutil import UTCDateTime

config = context.config
url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
if not url:
    url = get_settings().database_url


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | bool:
    # Revisions must not import application code: a UTCDateTime column is a plain timestamptz.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def include_name(name: str | None, type_: str, _parent_names: Any) -> bool:
    # The ledger's partitions on PostgreSQL are made at run time (api/ledger/partitions.py), not by models.
    return not (type_ == "table" and name is not None and PARTITION_NAME.match(name))


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")  # handed over by api.data.migrate or the tests
    if isinstance(connectable, Connection):
        _run(connectable)
        return
    engine = connectable if isinstance(connectable, Engine) else make_sync_engine(url)
    with engine.connect() as connection:
        _run(connection)
    if connectable is None:
        engine.dispose()


def _run(connection: Connection) -> None:
    if connection.dialect.name == "sqlite" and connection.exec_driver_sql("PRAGMA foreign_keys").scalar():
        # rebuilding a table would delete what refers to it: api/data/migrate.py `run` turns them off
        raise RuntimeError("SQLite migrations run with foreign keys off: run them through api.data.migrate")
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
        render_item=render_item,
        include_name=include_name,
        compare_type=True,
        compare_server_default=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
run_migrations_online()
