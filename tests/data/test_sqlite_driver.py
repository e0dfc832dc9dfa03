"""The SQLite driver's one trip per statement (api/data/sqlite_driver.py): what SQLAlchemy reads of a
cursor is all there, errors are SQLAlchemy's own and roll back, a statement makes exactly one trip,
ending no transaction makes none, a transaction's last statement can commit in its own trip, and
statements deferred go with the next trip, in order, or nowhere when the transaction is rolled back."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiosqlite
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError

from api.data.database import make_async_engine
from api.data.sqlite_driver import DEFERRED, LAST_OF_TRANSACTION

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


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The trips to aiosqlite's thread from here on."""
    made: list[object] = []
    original = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        made.append(fn)
        return await original(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    return made


async def test_deferred_statements_go_with_the_next_trip_in_order(engine, trips: list[object]) -> None:  # type: ignore[no-untyped-def]
    async with engine.connect() as connection:
        await connection.execute(insert(ITEMS).values(id=1, name="a"), execution_options=DEFERRED)
        rows = [{"id": 2, "name": "b"}, {"id": 3, "name": "c"}]
        await connection.execute(insert(ITEMS), rows, execution_options=DEFERRED)
        await connection.execute(update(ITEMS).where(ITEMS.c.id == 1).values(name="a!"), execution_options=DEFERRED)
        assert trips == []
        names = await connection.execute(select(ITEMS.c.name).order_by(ITEMS.c.id))
        assert names.scalars().all() == ["a!", "b", "c"] and len(trips) == 1
        await connection.execute(insert(ITEMS).values(id=4, name="d"), execution_options=DEFERRED)
        raw = {**DEFERRED, "no_parameters": True}
        await connection.exec_driver_sql("INSERT INTO items (id, name) VALUES (5, 'e')", execution_options=raw)
        await connection.commit()  # the deferred inserts and the commit: one trip
        assert len(trips) == 2
    async with engine.connect() as connection:
        assert (await connection.execute(select(ITEMS.c.id))).scalars().all() == [1, 2, 3, 4, 5]


async def test_deferred_statements_rolled_back_are_never_sent(engine, trips: list[object]) -> None:  # type: ignore[no-untyped-def]
    async with engine.connect() as connection:
        await connection.execute(insert(ITEMS).values(name="a"), execution_options=DEFERRED)
        await connection.rollback()
        await connection.commit()
        assert trips == []
        assert (await connection.execute(select(ITEMS.c.id))).all() == []


@pytest.mark.parametrize("last", [None, "statement"])
async def test_a_deferred_statement_refused_fails_the_commit_and_keeps_nothing(engine, last: str | None) -> None:  # type: ignore[no-untyped-def]
    """Refused in the trip of the commit, or of the transaction's last statement: the transaction is
    rolled back there (SQLAlchemy takes a failed commit for a transaction ended, and would pool the
    connection with SQLite's writer lock still held)."""
    with pytest.raises(IntegrityError):
        async with engine.connect() as connection:
            await connection.execute(insert(ITEMS).values(name="same"))
            await connection.execute(insert(ITEMS).values(name="same"), execution_options=DEFERRED)
            if last:
                await connection.execute(insert(ITEMS).values(name="other"), execution_options=LAST_OF_TRANSACTION)
            await connection.commit()
    other = sqlite3.connect(engine.url.database, timeout=0.2)
    try:
        other.execute("INSERT INTO items (name) VALUES ('another writer')")  # SQLite's writer is free
        other.commit()
    finally:
        other.close()
    async with engine.connect() as connection:
        assert (await connection.execute(select(ITEMS.c.name))).scalars().all() == ["another writer"]
