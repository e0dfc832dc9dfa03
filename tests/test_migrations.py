"""The migrations build exactly the models' schema, on SQLite and PostgreSQL, and can go back."""

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select

from api.migrate import alembic_config
from api.models import Base, ChangeCounter


def drift(engine) -> list:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "compare_server_default": True})
        return compare_metadata(context, Base.metadata)


def test_migrations_match_the_models(sync_engine):
    assert drift(sync_engine) == []


def test_migrations_seed_the_change_counter(sync_engine):
    with sync_engine.connect() as connection:
        assert connection.execute(select(ChangeCounter.value).where(ChangeCounter.id == 1)).scalar_one() == 0


def test_downgrade_to_base_and_upgrade_again(sync_engine):
    config = alembic_config(sync_engine)
    with sync_engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert set(inspect(sync_engine).get_table_names()) <= {"alembic_version"}
    with sync_engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    assert drift(sync_engine) == []
