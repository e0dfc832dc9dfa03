"""A worker puts the latest policy release in force on the request that sees it, with everything
derived from the policy, and only a release that loads (tests/http/test_policy_reload.py runs the
same on a real server, with `partner-api policy reload` and SIGHUP)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from api.data.models import PolicyRelease
from api.http.policy_in_force import PolicyRefused, policy_digest, starting_policy
from api.operators.policy_release import release_policy
from api.settings import Settings
from authz.engine import POLICY_DIR
from tests.world import window_args

PHONES = """query($p: ID!, $from: DateTime!, $to: DateTime!) {
  appointments(practiceId: $p, from: $from, to: $to, first: 3) { edges { node { patient { phone } } } } }"""
PHONE_WITH_IDENTITY = '\nfield_needs_scope("Patient.phone", "patients:identity");\n'


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    for source in POLICY_DIR.glob("*.polar"):
        shutil.copy(source, tmp_path / source.name)
    return tmp_path


async def phones(api, world) -> list[str | None]:
    answer = await api.query(world.keys["no-contact"], PHONES, {"p": world.practice_id("A"), **window_args()})
    return [edge["node"]["patient"]["phone"] for edge in answer.data["appointments"]["edges"]]


async def test_a_new_release_is_in_force_from_the_next_request_with_its_derived_caches(
    make_api, world, sync_engine, policy_dir
):
    api = make_api(policy_dir=policy_dir)
    app = api.http._transport.app
    assert not any(await phones(api, world))
    before = app.state.policy.current
    fields = policy_dir / "fields.polar"
    fields.write_text(fields.read_text() + PHONE_WITH_IDENTITY)
    release = release_policy(sync_engine, policy_dir)
    assert release.changed and release.release_id is not None
    assert all(await phones(api, world))
    after = app.state.policy.current
    assert after.version == release.release_id and after.authorizer is not before.authorizer
    # The ledger records the phone under the identity scope now: derived again, not kept.
    assert after.field_groups != before.field_groups


async def test_releasing_the_same_texts_again_changes_nothing(make_api, world, sync_engine, policy_dir):
    first = release_policy(sync_engine, policy_dir)
    again = release_policy(sync_engine, policy_dir)
    assert first.changed and not again.changed and again.release_id == first.release_id
    api = make_api(policy_dir=policy_dir)
    app = api.http._transport.app
    authorizer = app.state.policy.current.authorizer
    assert not any(await phones(api, world))
    assert app.state.policy.current.authorizer is authorizer  # started from that release: nothing to load


async def test_a_release_that_fails_check_is_never_made(make_api, world, sync_engine, policy_dir):
    api = make_api(policy_dir=policy_dir)
    policy = policy_dir / "policy.polar"
    policy.write_text(policy.read_text() + '\nhas_scope(grant, "billing:read") if grant.id = 1;\n')
    refused = release_policy(sync_engine, policy_dir)
    assert not refused.report.ok and refused.release_id is None and not refused.changed
    assert "not loaded; the policy the server started with keeps serving" in refused.summary
    with Session(sync_engine) as session:
        assert session.query(PolicyRelease).count() == 0
    assert not any(await phones(api, world))


async def test_a_release_that_does_not_load_leaves_the_policy_in_force(make_api, world, sync_engine, caplog):
    api = make_api()
    app = api.http._transport.app
    before = app.state.policy.current
    # Written behind `policy reload`'s back: the worker still never serves it.
    texts = {"policy.polar": "allow(a, b, c) if a = ;"}
    with Session(sync_engine) as session, session.begin():
        session.add(PolicyRelease(digest=policy_digest(texts), sources=texts, directory="/nowhere"))
    assert not any(await phones(api, world))
    assert app.state.policy.current is before
    assert "could not be loaded" in caplog.text
    caplog.clear()
    assert not any(await phones(api, world))
    assert "could not be loaded" not in caplog.text  # tried once per worker, not on every request


def test_a_worker_does_not_start_on_a_policy_directory_that_fails_check(database_url, policy_dir):
    fields = policy_dir / "fields.polar"
    fields.write_text(
        fields.read_text().replace('"Patient.phone", "patients:contact"', '"Patient.phon", "patients:contact"')
    )
    with pytest.raises(PolicyRefused, match=r"the GraphQL schema has no field 'Patient.phon'"):
        starting_policy(Settings(database_url=database_url, policy_dir=policy_dir))


async def test_an_authorizer_given_in_code_is_never_replaced_by_a_release(database_url, world, sync_engine, policy_dir):
    from api.http.app import create_app
    from authz.engine import Authorizer
    from tests.client import ApiClient

    given = Authorizer()
    app = create_app(Settings(database_url=database_url, secret_key="test"), authorizer=given)
    api = ApiClient(app)
    fields = policy_dir / "fields.polar"
    fields.write_text(fields.read_text() + PHONE_WITH_IDENTITY)
    assert release_policy(sync_engine, policy_dir).changed
    try:
        assert not any(await phones(api, world))
        assert app.state.policy.current.authorizer is given
    finally:
        await api.close()
        await app.state.engine.dispose()


async def test_a_release_from_another_directory_says_which_release_it_replaces(sync_engine, policy_dir):
    """A restart without PARTNER_API_POLICY_DIR releases the shipped policy over a custom one: `serve`
    logs it as a warning, naming both."""
    fields = policy_dir / "fields.polar"
    fields.write_text(fields.read_text() + PHONE_WITH_IDENTITY)
    custom = release_policy(sync_engine, policy_dir)
    assert custom.changed and custom.replaced is None and str(policy_dir.resolve()) in custom.summary
    shipped = release_policy(sync_engine, POLICY_DIR)
    assert shipped.changed and shipped.replaced == f"release {custom.release_id} of {policy_dir.resolve()}"
    assert f"replacing release {custom.release_id} of {policy_dir.resolve()}" in shipped.summary
