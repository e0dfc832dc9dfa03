"""Revoking a key or a grant, suspending a partner or narrowing scopes counts on the very next request."""

from sqlalchemy import event, text
from sqlalchemy.orm import Session

from api.data.models import PartnerStatus
from api.operators import accounts as operators
from api.scopes import Scope
from tests.world import window_args

PHONE = """query($p: ID!, $from: DateTime!, $to: DateTime!) {
  appointments(practiceId: $p, from: $from, to: $to, first: 5) { edges { node { patient { phone } } } } }"""


async def test_revoked_grant_hides_the_practice_on_the_next_request(api, world, sync_engine):
    variables = {"p": world.practice_id("A"), **window_args()}
    assert (await api.query(world.keys["full"], PHONE, variables)).data["appointments"]["edges"]
    with Session(sync_engine) as session, session.begin():
        operators.revoke_grant(session, "full", "A")
    response = await api.query(world.keys["full"], PHONE, variables)
    assert response.data is None and response.codes == {"NOT_FOUND"}


async def test_narrowed_scopes_forbid_the_field_on_the_next_request(api, world, sync_engine):
    variables = {"p": world.practice_id("A"), **window_args()}
    assert (await api.query(world.keys["full"], PHONE, variables)).errors == []
    with Session(sync_engine) as session, session.begin():
        operators.change_grant(session, "full", "A", scopes={Scope.APPOINTMENTS_READ})
    response = await api.query(world.keys["full"], PHONE, variables)
    assert response.codes == {"FORBIDDEN"}
    assert all(e["node"]["patient"]["phone"] is None for e in response.data["appointments"]["edges"])


async def test_revoked_key_and_suspended_partner_are_refused_on_the_next_request(api, world, sync_engine):
    assert (await api.query(world.keys["full"], "{ viewer { name } }")).status == 200
    with Session(sync_engine) as session, session.begin():
        operators.set_partner_status(session, "full", PartnerStatus.SUSPENDED)
    assert (await api.query(world.keys["full"], "{ viewer { name } }")).status == 401
    with Session(sync_engine) as session, session.begin():
        operators.set_partner_status(session, "full", PartnerStatus.ACTIVE)
    assert (await api.query(world.keys["full"], "{ viewer { name } }")).status == 200
    with Session(sync_engine) as session, session.begin():
        operators.revoke_key(session, world.keys["full"].split("_")[1])
    assert (await api.query(world.keys["full"], "{ viewer { name } }")).status == 401


async def test_grants_changed_by_hand_in_sql_count_in_every_worker_on_the_next_request(make_api, world, sync_engine):
    """Workers keep grants between requests (api.identity.grant_cache): a trigger, not the CLI, invalidates them."""
    workers = make_api(), make_api()
    variables = {"p": world.practice_id("A"), **window_args()}
    with sync_engine.connect() as connection:
        grant_id = connection.execute(
            text(
                "SELECT grants.id FROM grants JOIN partners ON partners.id = grants.partner_id "
                "JOIN practices ON practices.id = grants.practice_id WHERE partners.name = 'full' AND "
                "practices.name = 'A'"
            )
        ).scalar_one()

    def set_contact(allowed: bool) -> None:
        with sync_engine.begin() as connection:
            connection.execute(
                text("UPDATE grants SET patients_contact = :allowed WHERE id = :id"),
                {"allowed": allowed, "id": grant_id},
            )

    for worker in workers:
        assert (await worker.query(world.keys["full"], PHONE, variables)).errors == []
    set_contact(False)
    for worker in workers:
        assert (await worker.query(world.keys["full"], PHONE, variables)).codes == {"FORBIDDEN"}
    set_contact(True)
    for worker in workers:
        assert (await worker.query(world.keys["full"], PHONE, variables)).errors == []


async def test_a_warm_request_does_not_read_the_grants_again(api, world):
    statements: list[str] = []
    event.listen(
        api.http._transport.app.state.engine.sync_engine, "before_cursor_execute", lambda *a: statements.append(a[2])
    )
    variables = {"p": world.practice_id("A"), **window_args()}
    for _ in range(2):
        statements.clear()
        assert (await api.query(world.keys["full"], PHONE, variables)).errors == []
    assert not [s for s in statements if s.lstrip().startswith("SELECT grants.")]  # row rules' EXISTS (grants) stay
