"""A partner sees only the practices that granted it access: by list, id, filter, node or nesting."""

import pytest
from sqlalchemy.orm import Session

from api.ids import new_public_id
from api.operators import accounts as operators
from api.services import reads
from tests.client import walk
from tests.world import World, window_args

APPOINTMENTS = """
query($practiceId: ID!, $from: DateTime!, $to: DateTime!) {
  appointments(practiceId: $practiceId, from: $from, to: $to, first: 100) {
    edges { node { id patient { id } practitioner { id } practice { id } } }
  }
}"""


def ids_in(body: object) -> set[str]:
    return {value for key, value in walk(body) if key == "id" and isinstance(value, str)}


def foreign_ids(world: World, practice: str) -> set[str]:
    return {
        world.practice_id(practice),
        *world.appointments[practice],
        *world.patients[practice],
        *world.practitioners[practice],
    }


async def test_partner_lists_only_granted_practices(api, world):
    response = await api.query(world.keys["other"], "{ practices(first: 100) { edges { node { id name } } } }")
    assert [e["node"]["name"] for e in response.data["practices"]["edges"]] == ["B"]


@pytest.mark.parametrize("partner", ["other", "unconnected", "expired", "revoked"])
async def test_appointments_of_a_practice_without_live_read_grant_are_not_found(api, world, partner):
    response = await api.query(
        world.keys[partner], APPOINTMENTS, {"practiceId": world.practice_id("A"), **window_args()}
    )
    assert response.data is None
    assert response.codes == {"NOT_FOUND"}
    assert not ids_in(response.body) & foreign_ids(world, "A")


async def test_writer_without_read_scope_gets_no_appointment_rows(api, world):
    # The practice itself is visible (live grant), its appointments are not.
    response = await api.query(
        world.keys["writer-only"], APPOINTMENTS, {"practiceId": world.practice_id("A"), **window_args()}
    )
    assert response.data["appointments"]["edges"] == []


async def test_own_practice_appointments_carry_only_that_practice(api, world):
    response = await api.query(
        world.keys["full"], APPOINTMENTS, {"practiceId": world.practice_id("A"), **window_args()}
    )
    seen = ids_in(response.data)
    assert set(world.appointments["A"]) <= seen
    assert not seen & (foreign_ids(world, "B") | foreign_ids(world, "C"))


@pytest.mark.parametrize("kind", ["appointments", "patients", "practitioners"])
async def test_node_of_another_practice_answers_exactly_like_a_missing_one(api, world, kind):
    foreign = getattr(world, kind)["A"][0]
    missing = new_public_id(
        {"appointments": "Appointment", "patients": "Patient", "practitioners": "Practitioner"}[kind]
    )
    query = "query($id: ID!) { node(id: $id) { id } }"
    refused = await api.query(world.keys["other"], query, {"id": foreign})
    absent = await api.query(world.keys["other"], query, {"id": missing})
    assert refused.data == absent.data == {"node": None}
    assert refused.errors[0]["message"] == absent.errors[0]["message"]
    assert refused.codes == absent.codes == {"NOT_FOUND"}


async def test_practice_by_id_of_another_practice_is_not_found(api, world):
    response = await api.query(
        world.keys["other"], "query($id: ID!) { practice(id: $id) { id name } }", {"id": world.practice_id("A")}
    )
    assert response.data == {"practice": None}
    assert response.codes == {"NOT_FOUND"}


async def test_nodes_mixing_own_and_foreign_ids_returns_only_own(api, world):
    ids = [world.appointments["B"][0], world.appointments["A"][0], world.patients["A"][0], world.practice_id("C")]
    response = await api.query(world.keys["other"], "query($ids: [ID!]!) { nodes(ids: $ids) { id } }", {"ids": ids})
    assert response.data["nodes"] == [{"id": world.appointments["B"][0]}, None, None, None]


@pytest.mark.parametrize(
    "guess", ["apt_" + "a" * 26, "1", "apt_1", "prc_" + "2" * 26, "", "pat_ABCDEFGHIJKLMNOPQRSTUVWXYZ"]
)
async def test_guessed_ids_find_nothing(api, world, guess):
    response = await api.query(world.keys["full"], "query($id: ID!) { node(id: $id) { id } }", {"id": guess})
    assert response.data == {"node": None}
    assert response.codes == {"NOT_FOUND"}


async def test_an_id_longer_than_any_id_is_refused_before_the_database(api, world):
    response = await api.query(world.keys["full"], "query($id: ID!) { node(id: $id) { id } }", {"id": "x" * 5000})
    assert response.data == {"node": None} and response.codes == {"BAD_USER_INPUT"}
    assert response.errors[0]["extensions"]["field"] == "id"


async def test_filter_by_a_foreign_practitioner_is_not_found(api, world):
    query = """query($p: ID!, $pr: ID!, $from: DateTime!, $to: DateTime!) {
      appointments(practiceId: $p, practitionerId: $pr, from: $from, to: $to, first: 10) { edges { node { id } } } }"""
    variables = {"p": world.practice_id("B"), "pr": world.practitioners["C"][0], **window_args()}
    response = await api.query(world.keys["other"], query, variables)
    assert response.data is None and response.codes == {"NOT_FOUND"}


async def test_practitioner_shared_by_two_practices_shows_one_id_per_practice(api, world):
    # Dr Martin works at A and B; B's partner gets B's id for her and cannot use A's.
    query = (
        "{ practices(first: 10) { edges { node { practitioners(first: 10) { edges { node { id lastName } } } } } } }"
    )
    response = await api.query(world.keys["other"], query)
    ids = ids_in(response.data)
    assert ids == set(world.practitioners["B"])
    assert not ids & set(world.practitioners["A"])


async def test_viewer_lists_only_live_grants(api, world):
    query = "{ viewer { name grants { practiceName scopes } } }"
    assert (await api.query(world.keys["full"], query)).data["viewer"]["grants"][0]["practiceName"] == "A"
    for partner in ("expired", "revoked", "unconnected"):
        assert (await api.query(world.keys[partner], query)).data["viewer"]["grants"] == []


async def test_a_patient_whose_grant_is_revoked_mid_request_is_not_found(api, world, sync_engine, monkeypatch):
    loaded = reads.patients

    async def revoked_in_between(*args, **kwargs):
        with Session(sync_engine) as session, session.begin():
            operators.revoke_grant(session, "full", "A")
        return await loaded(*args, **kwargs)

    monkeypatch.setattr(reads, "patients", revoked_in_between)
    response = await api.query(
        world.keys["full"], "query($id: ID!) { node(id: $id) { id } }", {"id": world.patients["A"][0]}
    )
    assert response.data == {"node": None}
    assert response.codes == {"NOT_FOUND"}
