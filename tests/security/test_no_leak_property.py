"""Property: whatever grants a partner holds and whatever it asks, no response ever carries a row
of a practice without a live grant, nor a value of a field its grant there does not permit."""

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from api.data.models import Appointment, Grant, Partner, Patient, Practice
from api.scopes import Scope
from api.timeutil import utcnow
from tests.client import walk
from tests.world import window_args

PRACTICES = "ABC"
grant_state = st.sampled_from(["live", "expired", "revoked"])
grant = st.tuples(grant_state, st.sets(st.sampled_from(list(Scope)), min_size=1))
grants = st.dictionaries(st.sampled_from(PRACTICES), grant)

PATIENT = "{ id firstName lastName gender birthDate phone email }"
QUERIES = {
    "page": f"""query($p: ID!, $from: DateTime!, $to: DateTime!) {{
        appointments(practiceId: $p, from: $from, to: $to, first: 50) {{
          edges {{ node {{ id reason startsAt patient {PATIENT} practitioner {{ id lastName }} practice {{ id name
    }} }} }} }} }}""",
    "node": f"""query($id: ID!) {{ node(id: $id) {{ id ... on Appointment {{ reason patient {PATIENT} }}
        ... on Patient {{ firstName phone email }} ... on Practice {{ name }} ... on Practitioner {{ lastName }} }}
    }}""",
    "nodes": f"""query($ids: [ID!]!) {{ nodes(ids: $ids) {{ id ... on Appointment {{ r: reason p: patient {PATIENT} }}
        ... on Patient {{ e: email t: phone }} }} }}""",
    "practices": """{ practices(first: 10) { edges { node { id name
        practitioners(first: 20) { edges { node { id lastName rpps } } } } } } }""",
}


def set_grants(engine, wanted: dict[str, tuple[str, set[Scope]]]) -> None:
    with Session(engine) as session, session.begin():
        partner = session.scalar(select(Partner).where(Partner.name == "full"))
        session.execute(delete(Grant).where(Grant.partner_id == partner.id))
        for practice_name, (state, scopes) in wanted.items():
            practice = session.scalar(select(Practice).where(Practice.name == practice_name))
            g = Grant(partner_id=partner.id, practice_id=practice.id, expires_at=utcnow() + timedelta(days=1))
            g.set_scopes(scopes)
            if state == "expired":
                g.expires_at = utcnow() - timedelta(seconds=1)
            elif state == "revoked":
                g.revoked_at = utcnow()
            session.add(g)


def owners(engine) -> dict[str, str]:
    """Which practice each id and each sensitive value belongs to."""
    owner: dict[str, str] = {}
    with Session(engine) as session:
        names = {p.id: p.name for p in session.scalars(select(Practice))}
        for p in session.scalars(select(Patient)):
            for value in (p.public_id, p.first_name, p.last_name, p.phone, p.email):
                owner[value] = names[p.practice_id]
        for a in session.scalars(select(Appointment)):
            owner[a.public_id] = owner[a.reason] = names[a.practice_id]
    return owner


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(wanted=grants, query=st.sampled_from(sorted(QUERIES)), target=st.sampled_from(PRACTICES), pick=st.integers(0, 2))
async def test_no_row_or_field_beyond_live_grants(api, world, sync_engine, wanted, query, target, pick):
    set_grants(sync_engine, wanted)
    live = {p: scopes for p, (state, scopes) in wanted.items() if state == "live"}
    readers = {p for p, scopes in live.items() if Scope.APPOINTMENTS_READ in scopes}
    ids = [
        world.appointments[target][pick],
        world.patients[target][pick],
        world.practitioners[target][0],
        world.practice_id(target),
    ]
    variables = {"p": world.practice_id(target), **window_args(), "id": ids[pick], "ids": ids}
    response = await api.query(
        world.keys["full"], QUERIES[query], {k: v for k, v in variables.items() if f"${k}" in QUERIES[query]}
    )

    assert response.status == 200, response.body
    assert "INTERNAL_SERVER_ERROR" not in response.codes
    owner = owners(sync_engine)
    practice_ids = {world.practice_id(p): p for p in PRACTICES}
    for key, value in walk(response.data):
        if not isinstance(value, str):
            continue
        if key == "id" and value in practice_ids:
            assert practice_ids[value] in live
        elif key == "id":
            practice = owner.get(value) or next(p for p in PRACTICES if value in world.practitioners[p])
            assert practice in readers, (key, value)
        elif value in owner:
            practice = owner[value]
            needed = {
                "reason": Scope.APPOINTMENTS_REASON,
                "r": Scope.APPOINTMENTS_REASON,
                "phone": Scope.PATIENTS_CONTACT,
                "email": Scope.PATIENTS_CONTACT,
                "t": Scope.PATIENTS_CONTACT,
                "e": Scope.PATIENTS_CONTACT,
                "firstName": Scope.PATIENTS_IDENTITY,
                "lastName": Scope.PATIENTS_IDENTITY,
            }[key]
            assert needed in live.get(practice, set()), (key, value, wanted)
