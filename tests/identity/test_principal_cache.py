"""The key -> principal cache (api/identity/principal_cache.py): with two workers on one database,
every change an operator (or the extraction guard) makes to a key, its partner, grants, documents
or the policy is seen by each worker's next request, as without the cache; and a hit costs no key
lookup (PostgreSQL: no statement at all; SQLite: one read of the version row)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text, update
from sqlalchemy.orm import Session

from api.clock import SettableClock
from api.data.models import PartnerKey, PartnerStatus
from api.operators import accounts as operators
from api.operators.policy_release import release_policy
from api.scopes import Scope
from api.timeutil import utcnow
from tests.client import ApiClient
from tests.identity.workers import app_of, heard, notifications
from tests.statements import statements_sent
from tests.world import window_args

VIEWER = "{ viewer { name } }"
PHONE = """query($p: ID!, $from: DateTime!, $to: DateTime!) {
  appointments(practiceId: $p, from: $from, to: $to, first: 3) { edges { node { patient { phone } } } } }"""


async def warm(clients: list[ApiClient], key: str, query: str = VIEWER, variables: dict[str, Any] | None = None):
    """Each worker authenticates the key, twice: the second request is a hit."""
    for client in clients:
        for _ in range(2):
            response = await client.query(key, query, variables)
            assert response.status == 200 and response.errors == [], response.body


def in_session(sync_engine, act: Callable[[Session], object]) -> Callable[[], None]:
    def run() -> None:
        with Session(sync_engine) as session, session.begin():
            act(session)

    return run


def prefix(key: str) -> str:
    return key.split("_")[1]


async def test_a_hit_issues_no_key_lookup(workers, world, database_url):
    (worker,) = await workers(1)
    key = world.keys["full"]
    with statements_sent(app_of(worker)) as first:
        assert (await worker.query(key, VIEWER)).status == 200
    assert any("partner_keys" in s for s in first)  # the miss looks the key up
    with statements_sent(app_of(worker)) as hit:
        assert (await worker.query(key, VIEWER)).status == 200
    authentication = [s for s in hit if any(t in s for t in ("partner_keys", "policy_releases", "principal_versions"))]
    if database_url.startswith("postgresql"):
        assert authentication == []
    else:
        assert len(authentication) == 1 and "principal_versions" in authentication[0]


async def test_the_cache_turned_off_looks_the_key_up_on_every_request(workers, world):
    (worker,) = await workers(1, principal_cache=False)
    for _ in range(2):
        with statements_sent(app_of(worker)) as sent:
            assert (await worker.query(world.keys["full"], VIEWER)).status == 200
        assert any("partner_keys" in s for s in sent)


async def test_a_wrong_secret_for_a_cached_prefix_never_hits(workers, world):
    (worker,) = await workers(1)
    key = world.keys["full"]
    await warm([worker], key)
    forged = key[:-4] + ("aaaa" if not key.endswith("aaaa") else "bbbb")
    assert (await worker.query(forged, VIEWER)).status == 401
    assert (await worker.query(key, VIEWER)).status == 200


async def test_a_revoked_key_is_refused_by_every_worker_on_its_next_request(workers, world, sync_engine):
    clients = await workers()
    key = world.keys["full"]
    await warm(clients, key)
    await heard(clients, in_session(sync_engine, lambda s: operators.revoke_key(s, prefix(key))))
    for client in clients:
        assert (await client.query(key, VIEWER)).status == 401


async def test_a_suspended_partner_is_refused_and_its_reactivation_served(workers, world, sync_engine):
    clients = await workers()
    key = world.keys["full"]
    await warm(clients, key)
    suspend = in_session(sync_engine, lambda s: operators.set_partner_status(s, "full", PartnerStatus.SUSPENDED))
    await heard(clients, suspend)
    for client in clients:
        assert (await client.query(key, VIEWER)).status == 401
    activate = in_session(sync_engine, lambda s: operators.set_partner_status(s, "full", PartnerStatus.ACTIVE))
    await heard(clients, activate)
    for client in clients:
        assert (await client.query(key, VIEWER)).status == 200


async def test_a_key_quarantined_as_extraction_does_is_refused_by_every_worker(workers, world, sync_engine):
    clients = await workers()
    key = world.keys["full"]
    await warm(clients, key)

    def quarantine() -> None:  # the statement of api/protection/extraction.py
        with sync_engine.begin() as connection:
            connection.execute(
                update(PartnerKey)
                .where(PartnerKey.prefix == prefix(key), PartnerKey.quarantined_at.is_(None))
                .values(quarantined_at=utcnow())
            )

    await heard(clients, quarantine)
    for client in clients:
        response = await client.query(key, VIEWER)
        assert response.status == 403 and response.codes == {"KEY_QUARANTINED"}
    await heard(clients, in_session(sync_engine, lambda s: operators.release_key(s, prefix(key))))
    for client in clients:
        assert (await client.query(key, VIEWER)).status == 200


async def test_tokens_required_and_key_mode_are_seen_by_every_worker(workers, world, sync_engine):
    clients = await workers()
    key = world.keys["full"]
    await warm(clients, key)

    def set_partner(tokens_required: bool) -> Callable[[], None]:
        return in_session(
            sync_engine, lambda s: setattr(operators.find_partner(s, "full"), "tokens_required", tokens_required)
        )

    await heard(clients, set_partner(True))
    for client in clients:
        assert (await client.query(key, VIEWER)).status == 401
    await heard(clients, set_partner(False))
    await warm(clients, key)
    await heard(clients, in_session(sync_engine, lambda s: operators.set_key_mode(s, prefix(key), "trusted")))
    for client in clients:  # a trusted key runs registered documents only
        assert (await client.query(key, VIEWER)).status == 403


async def test_grant_changes_are_seen_by_every_worker(workers, world, sync_engine):
    clients = await workers()
    key, variables = world.keys["full"], {"p": world.practice_id("A"), **window_args()}
    await warm(clients, key, PHONE, variables)
    narrow = in_session(sync_engine, lambda s: operators.change_grant(s, "full", "A", scopes={Scope.APPOINTMENTS_READ}))
    await heard(clients, narrow)
    for client in clients:
        assert (await client.query(key, PHONE, variables)).codes == {"FORBIDDEN"}
    await heard(clients, in_session(sync_engine, lambda s: operators.revoke_grant(s, "full", "A")))
    for client in clients:
        response = await client.query(key, PHONE, variables)
        assert response.data is None and response.codes == {"NOT_FOUND"}


async def test_a_passing_expiry_is_seen_without_any_change(workers, world, sync_engine):
    clock = SettableClock(utcnow())
    clients = await workers(clock=clock)
    key = world.keys["full"]
    soon = update(PartnerKey).where(PartnerKey.prefix == prefix(key)).values(expires_at=clock() + timedelta(seconds=30))
    expire = in_session(sync_engine, lambda s: s.execute(soon))
    await heard(clients, expire)
    await warm(clients, key)
    clock.advance(seconds=31)
    for client in clients:
        assert (await client.query(key, VIEWER)).status == 401


async def test_a_hit_past_the_last_use_precision_records_the_use(workers, world, sync_engine):
    clock = SettableClock(utcnow())
    (worker,) = await workers(1, clock=clock)
    key = world.keys["full"]
    await warm([worker], key)
    clock.advance(minutes=5)
    assert (await worker.query(key, VIEWER)).status == 200
    with sync_engine.connect() as connection:
        used = connection.execute(
            text("SELECT last_used_at FROM partner_keys WHERE prefix = :p"), {"p": prefix(key)}
        ).scalar_one()
    used = used if isinstance(used, str) else used.isoformat()
    assert used.replace(" ", "T").startswith(clock().isoformat()[:16])


async def test_a_new_policy_release_is_seen_by_every_worker(workers, world, sync_engine, tmp_path):
    import shutil

    from authz.engine import POLICY_DIR

    for source in POLICY_DIR.glob("*.polar"):
        shutil.copy(source, tmp_path / source.name)
    clients = await workers(policy_dir=tmp_path)
    key, variables = world.keys["no-contact"], {"p": world.practice_id("A"), **window_args()}

    async def phones(client: ApiClient) -> list[Any]:
        answer = await client.query(key, PHONE, variables)
        return [edge["node"]["patient"]["phone"] for edge in answer.data["appointments"]["edges"]]

    for client in clients:
        for _ in range(2):
            assert not any(await phones(client))
    fields = tmp_path / "fields.polar"
    fields.write_text(fields.read_text() + '\nfield_needs_scope("Patient.phone", "patients:identity");\n')
    await heard(clients, lambda: release_policy(sync_engine, tmp_path))
    for client in clients:
        assert all(await phones(client))


async def test_a_removed_document_is_refused_by_every_worker(workers, world, sync_engine):
    from api.documents import service
    from tests.documents.conftest import CODEGEN, by_id, ids, make_checker

    with Session(sync_engine, expire_on_commit=False) as session, session.begin():
        service.register(session, make_checker(), "full", CODEGEN.read_bytes())
        key = operators.issue_partner_key(session, "full", label="trusted").token
    document = ids(CODEGEN)["Me"]
    clients = await workers()
    for client in clients:
        for _ in range(2):
            assert (await by_id(client, key, document)).status == 200
    await heard(clients, in_session(sync_engine, lambda s: service.remove(s, "full", document)))
    for client in clients:
        assert (await by_id(client, key, document)).status != 200


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_lost_listener_bypasses_the_cache_until_it_is_back(workers, world, sync_engine):
    (worker,) = await workers(1)
    listener = notifications(worker)
    assert listener is not None
    key, other = world.keys["full"], world.keys["reader"]
    await warm([worker], key)
    with sync_engine.begin() as connection:
        connection.execute(
            text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :name"),
            {"name": "partner-api principals"},
        )
    async with asyncio.timeout(10):
        while listener.listening:
            await asyncio.sleep(0.005)
    # While it is down: every request looks its key up, and a revocation counts at once, unheard.
    with statements_sent(app_of(worker)) as sent:
        assert (await worker.query(other, VIEWER)).status == 200
    assert any("partner_keys" in s for s in sent)
    with Session(sync_engine) as session, session.begin():
        operators.revoke_key(session, prefix(key))
    assert (await worker.query(key, VIEWER)).status == 401
    await listener.wait_listening(10)  # back: the cache serves again, cleared
    assert (await worker.query(key, VIEWER)).status == 401
    await warm([worker], other)
    with statements_sent(app_of(worker)) as hit:
        assert (await worker.query(other, VIEWER)).status == 200
    assert not any("partner_keys" in s for s in hit)


async def test_a_change_during_a_lookup_never_leaves_a_stale_principal(workers, world, sync_engine, monkeypatch):
    """The race: a lookup reads the key, then the key is revoked (and the notification heard) before
    the lookup stores what it read. The entry must never serve: the next request is refused."""
    from api.identity import principal_cache

    (worker,) = await workers(1)
    key = world.keys["full"]
    lookup = principal_cache.authenticate_key
    raced = False

    async def overtaken(session, token, now):
        nonlocal raced
        found = await lookup(session, token, now)
        if not raced:
            raced = True
            await heard([worker], in_session(sync_engine, lambda s: operators.revoke_key(s, prefix(key))))
        return found

    monkeypatch.setattr(principal_cache, "authenticate_key", overtaken)
    assert (await worker.query(key, VIEWER)).status == 200  # read before the revocation: served, as without a cache
    assert raced
    assert (await worker.query(key, VIEWER)).status == 401


@pytest.mark.parametrize(
    ("table", "change"),
    [
        ("partner_keys", "UPDATE partner_keys SET label = 'renamed'"),
        ("partners", "UPDATE partners SET budget_capacity = 7"),
        ("grants", "UPDATE grants SET days_back = days_back + 1"),
        (
            "trusted_documents",
            "INSERT INTO trusted_documents (partner_id, document_id, operation_type, text, cost, fields, scopes, "
            "manifest_format, registered_at) SELECT id, 'sha256:0', 'query', '{ a }', 1, '', '', 'codegen', "
            "CURRENT_TIMESTAMP FROM partners LIMIT 1",
        ),
        ("grants", "DELETE FROM grants WHERE id = (SELECT min(id) FROM grants)"),
    ],
)
async def test_any_change_but_a_keys_last_use_is_announced(workers, world, sync_engine, database_url, table, change):
    """The triggers: every watched table announces its changes; a key's last use (written by requests
    every minute) does not, or every worker would drop its cache each time."""
    (worker,) = await workers(1)

    def version() -> int:
        with sync_engine.connect() as connection:
            return int(connection.execute(text("SELECT value FROM principal_versions")).scalar_one())

    def run(sql: str) -> Callable[[], None]:
        def execute() -> None:
            with sync_engine.begin() as connection:
                connection.execute(text(sql))

        return execute

    before = version()
    await heard([worker], run(change))  # on PostgreSQL, fails unless notified
    if not database_url.startswith("postgresql"):
        assert version() > before
    listener = notifications(worker)
    generation = listener.generation if listener else version()
    run("UPDATE partner_keys SET last_used_at = CURRENT_TIMESTAMP")()
    if listener is not None:
        await asyncio.sleep(0.2)  # a notification would have arrived by now
        assert listener.generation == generation
    else:
        assert version() == generation


def test_every_key_column_but_its_last_use_is_watched():
    """A column added to partner_keys must be added to the migration's list (or to a new trigger)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "migrations/versions/2026_11_30_principal_notifications.py"
    spec = importlib.util.spec_from_file_location("principal_notifications", path)
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    assert set(migration.KEY_COLUMNS) == {c.name for c in PartnerKey.__table__.columns} - {"last_used_at"}
