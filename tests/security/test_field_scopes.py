"""A grant without a scope never yields the fields that scope guards, however the query asks."""

import pytest

from tests.client import walk
from tests.world import window_args

PAGE = """
query($p: ID!, $from: DateTime!, $to: DateTime!) {
  appointments(practiceId: $p, from: $from, to: $to, first: 100) {
    edges { node { id startsAt reason patient { id firstName lastName gender birthDate phone email } } }
  }
}"""

# The same fields reached through fragments, aliases, inline fragments and node().
DISGUISED = """
fragment Contact on Patient { tel: phone mail: email }
query($p: ID!, $from: DateTime!, $to: DateTime!, $apt: ID!, $pat: ID!) {
  a: appointments(practiceId: $p, from: $from, to: $to, first: 100) {
    edges { node { motif: reason patient { ...Contact ... on Patient { phone } } } }
  }
  b: node(id: $apt) { ... on Appointment { reason patient { ...Contact } } }
  c: node(id: $pat) { ...Contact ... on Patient { phone email } }
  d: nodes(ids: [$apt, $pat]) { ... on Appointment { reason } ... on Patient { phone email } }
}"""


def values(body: object, keys: set[str]) -> list[object]:
    return [value for key, value in walk(body) if key in keys and value is not None]


async def fetch(api, world, partner, query=PAGE):
    variables = {
        "p": world.practice_id("A"),
        **window_args(),
        "apt": world.appointments["A"][0],
        "pat": world.patients["A"][0],
    }
    return await api.query(world.keys[partner], query, variables)


async def test_partner_without_contact_scope_never_sees_phone_or_email(api, world):
    response = await fetch(api, world, "no-contact")
    assert values(response.data, {"phone", "email"}) == []
    forbidden = {e["extensions"]["field"] for e in response.errors if e["extensions"]["code"] == "FORBIDDEN"}
    assert forbidden == {"Patient.phone", "Patient.email", "Appointment.reason"}
    # identity is granted: names are there
    assert values(response.data, {"firstName"})


async def test_forbidden_fields_stay_hidden_through_fragments_aliases_and_nodes(api, world):
    response = await fetch(api, world, "no-contact", DISGUISED)
    assert values(response.data, {"tel", "mail", "phone", "email", "reason", "motif"}) == []
    assert response.codes == {"FORBIDDEN"}
    assert response.data["a"]["edges"]  # the rest is served


async def test_read_only_grant_sees_times_but_no_patient_data(api, world):
    response = await fetch(api, world, "reader")
    assert values(response.data, {"firstName", "lastName", "gender", "birthDate", "phone", "email", "reason"}) == []
    assert values(response.data, {"startsAt"})
    assert all(edge["node"]["patient"]["id"] for edge in response.data["appointments"]["edges"])


async def test_full_grant_reads_everything_it_asks(api, world):
    response = await fetch(api, world, "full")
    assert response.errors == []
    assert len(values(response.data, {"phone"})) == len(world.appointments["A"])


async def test_forbidden_error_points_at_the_field_and_nulls_only_it(api, world):
    response = await fetch(api, world, "reader")
    paths = [e["path"] for e in response.errors]
    assert ["appointments", "edges", 0, "node", "patient", "phone"] in paths
    assert response.data["appointments"]["edges"][0]["node"]["patient"]["phone"] is None


@pytest.mark.parametrize("field", ["internalNote", "internal_note", "sourcePartnerId", "changeSeq"])
async def test_internal_columns_are_not_in_the_api_at_all(api, world, field):
    query = f"query($id: ID!) {{ node(id: $id) {{ ... on Appointment {{ {field} }} }} }}"
    response = await api.query(world.keys["full"], query, {"id": world.appointments["A"][0]})
    assert response.data is None
    assert response.codes == {"BAD_USER_INPUT"}
    assert "Note interne" not in str(response.body)
