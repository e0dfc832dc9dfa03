"""Run alembic migrations from code (used by the CLI and the tests)."""

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(engine: Engine | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(slug)s")
    if engine is not None:
        config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return config


def run(engine: Engine, alembic_command: Callable[..., None], *args: str) -> None:
    """An alembic command (`command.upgrade`, `downgrade`, `check`) on `engine`, in one transaction.

    On SQLite with foreign keys off meanwhile, and checked before the commit, as SQLite's own procedure
    for changing a table says: alembic rebuilds a table by copying it, and dropping the old one with
    foreign keys on deletes first the rows that refer to it (ON DELETE CASCADE: a rebuild of
    `appointments` emptied `idempotency_records`). migrations/env.py refuses to run otherwise."""
    config = alembic_config(engine)
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:  # outside any transaction, where SQLite takes it
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        try:
            with connection.begin():
                config.attributes["connection"] = connection
                alembic_command(config, *args)
                if sqlite and (broken := connection.exec_driver_sql("PRAGMA foreign_key_check").first()):
                    raise RuntimeError(f"the migration left rows of {broken[0]} referring to no row of {broken[2]}")
        finally:
            if sqlite:
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()


def upgrade(engine: Engine, revision: str = "head") -> None:
    run(engine, command.upgrade, revision)
