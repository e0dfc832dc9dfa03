"""Revoking a key or a grant, suspending a partner or narrowing scopes counts on the very next request."""

from sqlalchemy.orm import Session

from api import operators
from api.models import PartnerStatus
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
