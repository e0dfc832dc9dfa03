"""The ledger's monthly partitions on PostgreSQL (api/ledger/partitions.py, migration 8caa10998681): the
migration carries the rows and whatever columns other revisions added, retention drops whole months,
a report reads only the months of its period, and a row no month holds is still written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, event, func, insert, inspect, select, text
from sqlalchemy.orm import Session

from api.data.migrate import alembic_config, run
from api.data.models import AccessRecord, Disclosure, Practice
from api.ledger import partitions, retention
from api.ledger.exposure import partner_exposure
from api.timeutil import utcnow

PARTITIONED = "8caa10998681"  # migrations/versions/2026_11_30_partitioned_ledger.py
BEFORE = ScriptDirectory.from_config(alembic_config()).get_revision(PARTITIONED).down_revision  # the one before
postgresql_only = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def months_ago(months: int, day: int = 10) -> datetime:
    now = utcnow()
    index = now.year * 12 + now.month - 1 - months
    return datetime(index // 12, index % 12 + 1, day, 12, tzinfo=UTC)


def record(session: Session, at: datetime, practice_id: int, partner_id: int | None = None, shown: int = 2) -> None:
    access_id = session.execute(
        insert(AccessRecord)
        .values(
            request_id=f"r{at:%Y%m%d%H%M%S%f}{shown}",
            at=at,
            partner_id=partner_id,
            outcome="served",
            http_status=200,
            duration_ms=1.0,
        )
        .returning(AccessRecord.id)
    ).scalar_one()
    request = {"access_id": access_id, "at": at, "partner_id": partner_id}
    rows = [{**request, "practice_id": practice_id, "field_groups": 1} for _ in range(shown)]
    session.execute(insert(Disclosure), rows)


def counts(engine: Engine) -> tuple[int, int]:
    with engine.connect() as connection:
        return (
            connection.scalar(text("SELECT count(*) FROM access_records")),
            connection.scalar(text("SELECT count(*) FROM disclosures")),
        )


def test_the_migration_keeps_the_rows_and_the_columns_other_revisions_added(sync_engine, world):
    """Down to the revision before, with rows of several months and a column (and index) added by another
    revision of this round, then up again: nothing is lost, on either database."""
    run(sync_engine, command.downgrade, BEFORE)
    with sync_engine.begin() as connection:
        connection.execute(text("ALTER TABLE access_records ADD COLUMN another_revisions VARCHAR(64)"))
        connection.execute(
            text("CREATE INDEX ix_access_records_another_revisions ON access_records (another_revisions)")
        )
        practice = connection.scalar(text("SELECT min(id) FROM practices"))
        for months, document in ((14, "a"), (3, "b"), (0, "c")):
            at = months_ago(months)
            access_id = connection.scalar(
                text(
                    "INSERT INTO access_records (request_id, at, partner_id, outcome, http_status, duration_ms, "
                    "another_revisions) VALUES (:r, :at, (SELECT min(id) FROM partners), 'served', 200, 1.0, :d) "
                    "RETURNING id"
                ),
                {"r": f"req{months}", "at": at, "d": document},
            )
            connection.execute(
                text("INSERT INTO disclosures (access_id, practice_id, field_groups) VALUES (:a, :p, 1), (:a, :p, 4)"),
                {"a": access_id, "p": practice},
            )
    before = counts(sync_engine)
    run(sync_engine, command.upgrade, "head")
    assert counts(sync_engine) == before
    with sync_engine.connect() as connection:
        assert connection.scalar(text("SELECT count(*) FROM disclosures WHERE at IS NULL")) == 0
        mismatched = (
            "SELECT count(*) FROM disclosures d JOIN access_records a ON a.id = d.access_id "
            "WHERE a.at <> d.at OR coalesce(a.partner_id, -1) <> coalesce(d.partner_id, -1)"
        )
        assert connection.scalar(text(mismatched)) == 0
        assert connection.scalar(text("SELECT another_revisions FROM access_records WHERE request_id = 'req3'")) == "b"
        assert partitions.is_partitioned(connection) is (sync_engine.dialect.name == "postgresql")
        if sync_engine.dialect.name == "postgresql":
            names = {m.name for m in partitions.months(connection, "access_records")}
            assert {f"access_records_{months_ago(m):%Y_%m}" for m in range(15)} <= names
            # the copied rows sit in their months
            where = "SELECT tableoid::regclass::text FROM access_records WHERE request_id = 'req14'"
            assert connection.scalar(text(where)) == f"access_records_{months_ago(14):%Y_%m}"
    assert "ix_access_records_another_revisions" in {
        i["name"] for i in inspect(sync_engine).get_indexes("access_records")
    }
    with sync_engine.begin() as connection:  # the sequence survived the rebuild
        connection.execute(
            text(
                "INSERT INTO access_records (request_id, at, outcome, http_status, duration_ms) "
                "VALUES ('after', :at, 'served', 200, 1.0)"
            ),
            {"at": utcnow()},
        )


@pytest.mark.postgres
@postgresql_only
def test_retention_drops_whole_months_and_creates_the_next_ones(sync_engine, world):
    with Session(sync_engine) as session, session.begin():
        partitions.create_ahead(session.connection(), months_ago(14), ahead=14)
        practice = session.scalar(select(func.min(Practice.id)))
        for months in (14, 13, 2):
            record(session, months_ago(months), practice)
    statements: list[str] = []
    listener = lambda _c, _cur, statement, *_: statements.append(statement)  # noqa: E731
    event.listen(sync_engine, "before_cursor_execute", listener)
    try:
        with Session(sync_engine) as session:
            purged = retention.purge(session, timedelta(days=300), timedelta(days=30))
    finally:
        event.remove(sync_engine, "before_cursor_execute", listener)
    gone = {f"{table}_{months_ago(m):%Y_%m}" for table in partitions.PARTITIONED for m in (14, 13)}
    assert gone <= set(purged.months_dropped)
    # no row deleted one by one: the months went whole
    deletes = [s for s in statements if s.lstrip().upper().startswith("DELETE FROM ACCESS_RECORDS")]
    assert purged.access_records == 0 and deletes == []
    assert counts(sync_engine) == (1, 2)  # two months ago: kept
    with sync_engine.connect() as connection:
        names = {m.name for m in partitions.months(connection, "disclosures")}
    assert gone.isdisjoint(names)
    assert {f"disclosures_{months_ago(-m):%Y_%m}" for m in range(partitions.MONTHS_AHEAD + 1)} <= names


@pytest.mark.postgres
@postgresql_only
def test_a_partner_report_reads_only_the_months_of_its_period(sync_engine, world):
    with Session(sync_engine) as session, session.begin():
        partitions.create_ahead(session.connection(), months_ago(12), ahead=12)
        practice = session.scalar(select(func.min(Practice.id)))
        partner = session.scalar(text("SELECT id FROM partners WHERE name = 'full'"))
        for months in range(12, -1, -1):
            record(session, months_ago(months), practice, partner)
    statements = []
    capture = lambda _c, _cur, statement, parameters, *_: statements.append((statement, parameters))  # noqa: E731
    event.listen(sync_engine, "before_cursor_execute", capture)
    try:
        with Session(sync_engine) as session:
            now = utcnow()
            report = partner_exposure(session, "full", now - timedelta(days=30), now)
    finally:
        event.remove(sync_engine, "before_cursor_execute", capture)
    assert report.practices  # the period holds this month's request at least
    period = {f"{t}_{months_ago(m):%Y_%m}" for t in partitions.PARTITIONED for m in (0, 1)}
    explained = 0
    with sync_engine.connect() as connection:
        for statement, parameters in statements:
            if "disclosures" not in statement:
                continue
            plan = connection.exec_driver_sql("EXPLAIN " + statement, parameters).scalars().all()
            read = {name for line in plan for name in _partitions_named(line)}
            assert read and read <= period, (read, period)
            explained += 1
    assert explained == 4  # per practice, per document, per patient, per day


def _partitions_named(line: str) -> set[str]:
    return {word for word in line.replace("(", " ").split() if partitions.PARTITION_NAME.match(word)}


@pytest.mark.postgres
@postgresql_only
def test_a_request_in_a_month_without_a_partition_is_still_recorded(sync_engine, world):
    with Session(sync_engine) as session, session.begin():
        record(session, datetime(2099, 1, 1, tzinfo=UTC), session.scalar(select(func.min(Practice.id))))
    with sync_engine.connect() as connection:
        assert connection.scalar(text("SELECT count(*) FROM access_records_default")) == 1
        assert connection.scalar(text("SELECT count(*) FROM disclosures_default")) == 2


def test_the_partitions_command(cli, sync_engine):
    result = cli("ledger", "partitions", "--ahead", "5")
    assert result.exit_code == 0, result.output
    if sync_engine.dialect.name == "sqlite":
        assert "nothing to do" in result.output
    else:
        assert f"disclosures_{months_ago(-5):%Y_%m}" in result.output.split("disclosures:")[1]
