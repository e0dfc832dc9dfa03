"""The SQLite driver's one trip per statement (api/data/sqlite_driver.py): what SQLAlchemy reads of a
cursor is all there, errors are SQLAlchemy's own and roll back, a statement makes exactly one trip,
ending no transaction makes none, and a transaction's last statement can commit in its own trip."""

from __future__ import annotations

from pathlib import Path

import aiosqlite
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError

from api.data.database import make_async_engine
from api.data.sqlite_driver import LAST_OF_TRANSACTION

METADATA = MetaData()
ITEMS = Table("items", METADATA, Column("id", Integer, primary_key=True), Column("name", String, unique=True))


@pytest.fixture
async def engine(tmp_path: Path):  # type: ignore[no-untyped-def]
    engine = make_async_engine(f"sqlite:///{tmp_path / 'driver.db'}")
    async with engine.begin() as connection:
        await connection.run_sync(METADATA.create_all)
    yield engine
    await engine.dispose()


async def test_rows_counts_and_ids_are_read(engine) -> None:  # type: ignore[no-untyped-def]
    async with engine.begin() as connection:
        inserted = await connection.execute(insert(ITEMS).values(name="a"))
        assert inserted.inserted_primary_key == (1,)  # lastrowid
        await connection.execute(insert(ITEMS), [{"name": "b"}, {"name": "c"}])  # executemany
        returned = await connection.execute(insert(ITEMS).values(name="d").returning(ITEMS.c.id))
        assert returned.scalar_one() == 4
        updated = await connection.execute(update(ITEMS).where(ITEMS.c.id > 2).values(name=ITEMS.c.name + "!"))
        assert updated.rowcount == 2
        returning = update(ITEMS).where(ITEMS.c.id > 2).values(name=ITEMS.c.name).returning(ITEMS.c.id)
        updated = await connection.execute(returning)
        assert updated.rowcount == 2 and sorted(updated.scalars()) == [3, 4]
        result = await connection.execute(select(ITEMS.c.id, ITEMS.c.name).order_by(ITEMS.c.id))
        assert list(result.keys()) == ["id", "name"]  # description
        assert result.fetchmany(2) == [(1, "a"), (2, "b")]
        assert result.all() == [(3, "c!"), (4, "d!")]
    async with engine.connect() as connection:  # committed
        assert (await connection.execute(select(ITEMS.c.name).where(ITEMS.c.id == 3))).scalar_one() == "c!"
        streamed = await connection.stream(select(ITEMS.c.id).order_by(ITEMS.c.id))  # server-side: SQLAlchemy's adapter
        assert [row.id async for row in streamed] == [1, 2, 3, 4]


async def test_errors_are_sqlalchemys_and_roll_back(engine) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(IntegrityError):
        async with engine.begin() as connection:
            await connection.execute(insert(ITEMS).values(name="same"))
            await connection.execute(insert(ITEMS).values(name="same"))
    with pytest.raises(OperationalError):
        async with engine.connect() as connection:
            await connection.execute(text("SELECT * FROM no_such_table"))
    async with engine.connect() as connection:  # the failed transaction kept nothing; the connection still serves
        assert (await connection.execute(select(ITEMS.c.id))).all() == []


async def test_a_statement_makes_one_trip_to_the_thread(engine, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    trips = []
    original = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        trips.append(fn)
        return await original(self, fn, *args, **kwargs)

    async with engine.connect() as connection:
        await connection.execute(select(ITEMS.c.id))  # the connection opened, its transaction begun
        monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
        rows = await connection.execute(select(ITEMS.c.id, ITEMS.c.name))
        assert rows.all() == [] and len(trips) == 1  # SQLAlchemy's adapter makes four (cursor, enter, execute, fetch)
    assert len(trips) == 1  # reads open no transaction: giving the connection back rolls nothing back
    async with engine.begin() as connection:
        await connection.execute(insert(ITEMS).values(name="a"))
    assert len(trips) == 3  # the insert and its commit


async def test_the_last_statement_of_a_transaction_commits_in_its_own_trip(
    engine, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    trips = []
    original = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        trips.append(fn)
        return await original(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    async with engine.connect() as connection:
        await connection.execute(insert(ITEMS).values(name="a"))
        last = insert(ITEMS).values(name="b").returning(ITEMS.c.id)
        assert (await connection.execute(last, execution_options=LAST_OF_TRANSACTION)).scalar_one() == 2
        assert len(trips) == 2
        async with make_async_engine(engine.url).connect() as other:  # committed, both rows, before the commit
            assert (await other.execute(select(ITEMS.c.name).order_by(ITEMS.c.id))).scalars().all() == ["a", "b"]
        del trips[2:]  # the other connection's
        await connection.commit()
        assert len(trips) == 2  # nothing left to commit: no trip
        await connection.execute(insert(ITEMS).values(name="c"))  # the next statement is not the last one
        await connection.rollback()
    async with engine.connect() as connection:
        assert (await connection.execute(select(ITEMS.c.name).order_by(ITEMS.c.id))).scalars().all() == ["a", "b"]
