"""Registered documents run by id over POST and GET; a trusted key runs nothing else; a removed
document is refused on the very next request; a dry run costs the least operation; the ledger names the document."""

import json

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.data.models import AccessRecord, Disclosure
from api.documents import service
from api.documents.manifests import document_id_of
from api.protection.cost import OPERATION_COST
from tests.client import ACCEPT
from tests.documents.conftest import APOLLO, CODEGEN, RELAY, by_id, ids
from tests.world import window_args


@pytest.fixture
def registered(register, world):
    register("full", CODEGEN)
    return ids(CODEGEN)


@pytest.fixture
def key(trusted_key, registered):
    return trusted_key("full")


def day_variables(world) -> dict:
    return {"practiceId": world.practice_id("A"), **window_args()}


def records(sync_engine) -> list[AccessRecord]:
    with Session(sync_engine) as session:
        return list(session.scalars(select(AccessRecord).order_by(AccessRecord.id)))


async def test_a_registered_document_runs_by_id_over_post(api, world, key, registered):
    response = await by_id(api, key, registered["Day"], day_variables(world))
    assert response.status == 200 and response.errors == []
    edges = response.data["appointments"]["edges"]
    assert len(edges) == 6 and edges[0]["node"]["patient"]["phone"]
    # priced when registered: its worst case is charged, what was not used is given back
    assert response.body["extensions"]["cost"]["requestedQueryCost"] == 350


async def test_a_registered_query_runs_by_id_over_get(api, world, key, registered):
    response = await by_id(api, key, registered["One"], {"id": world.appointments["A"][0]}, method="GET")
    assert response.status == 200 and response.errors == []
    assert response.data["node"]["status"] == "BOOKED"


@pytest.mark.parametrize("accept", ["*/*", "application/json, text/plain, */*"], ids=["curl-and-fetch", "axios"])
async def test_a_get_by_id_from_a_client_that_accepts_anything_runs(api, world, key, registered, accept):
    """curl and fetch send `Accept: */*`: they ask for no page of an IDE."""
    params = {"documentId": registered["One"], "variables": json.dumps({"id": world.appointments["A"][0]})}
    headers = {"Authorization": f"Bearer {key}", "Accept": accept}
    response = await api.http.get("/graphql", params=params, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["data"]["node"]["status"] == "BOOKED"


@pytest.mark.parametrize("sample", [RELAY, APOLLO], ids=["relay", "apollo"])
async def test_each_tools_documents_run_by_their_id(api, world, register, trusted_key, sample):
    register("full", sample)
    key = trusted_key("full")
    name = "MeQuery" if sample == RELAY else "Me"
    response = await by_id(api, key, ids(sample)[name])
    assert response.errors == [] and response.data["viewer"]["name"] == "full"
    assert response.data["viewer"]["grants"][0]["practiceName"] == "A"


async def test_a_trusted_key_refuses_an_ad_hoc_document(api, world, key):
    response = await api.query(key, "query Me { viewer { name } }")
    assert response.status == 403 and response.codes == {"TRUSTED_DOCUMENTS_ONLY"}
    assert response.data is None


async def test_an_open_key_runs_both(api, world, registered):
    open_key = world.keys["full"]
    assert (await api.query(open_key, "{ viewer { keyMode } }")).data == {"viewer": {"keyMode": "OPEN"}}
    assert (await by_id(api, open_key, registered["Me"])).errors == []


async def test_viewer_tells_a_trusted_key_its_mode(api, world, register, trusted_key):
    text = "query Mode { viewer { keyMode } }"
    register("full", json.dumps({document_id_of(text): text}))
    response = await by_id(api, trusted_key("full"), document_id_of(text))
    assert response.data == {"viewer": {"keyMode": "TRUSTED"}}


async def test_an_unknown_id_is_persisted_query_not_found(api, world, key, registered):
    unknown = "sha256:" + "0" * 64
    response = await by_id(api, key, unknown)
    assert response.status == 400 and response.codes == {"PERSISTED_QUERY_NOT_FOUND"}
    assert response.errors[0]["extensions"]["documentId"] == unknown


async def test_another_partners_document_is_not_found(api, world, register, trusted_key):
    register("full", CODEGEN)
    response = await by_id(api, trusted_key("other"), ids(CODEGEN)["Me"])
    assert response.codes == {"PERSISTED_QUERY_NOT_FOUND"}


@pytest.mark.parametrize("bad", ["sha256:XYZ", "md5:" + "0" * 32, "0" * 63, 42])
async def test_a_malformed_id_is_bad_input(api, world, key, bad):
    response = await by_id(api, key, bad)
    assert response.status == 400 and response.codes == {"BAD_USER_INPUT"}


async def test_query_and_document_id_together_are_refused(api, world, key, registered):
    response = await by_id(api, key, registered["Me"], query="query Me { viewer { name } }")
    assert response.status == 400 and response.codes == {"BAD_USER_INPUT"}


def _hash(document_id: str) -> str:
    return document_id.removeprefix("sha256:")


# Each names the registered `Cancel` mutation in a way that is refused, by what it adds.
AMBIGUOUS = {
    "two ids": lambda ids: {
        "documentId": ids["Cancel"],
        "extensions": {"persistedQuery": {"version": 1, "sha256Hash": _hash(ids["Me"])}},
    },
    "version 2": lambda ids: {"extensions": {"persistedQuery": {"version": 2, "sha256Hash": _hash(ids["Cancel"])}}},
    "not an object": lambda ids: {"extensions": {"persistedQuery": _hash(ids["Cancel"])}},
    "dry run 'yes'": lambda ids: {"documentId": ids["Cancel"], "extensions": {"dryRun": "yes"}},  # was run for real
    "dry run 1": lambda ids: {"documentId": ids["Cancel"], "extensions": {"dryRun": 1}},
}


@pytest.mark.parametrize("body", AMBIGUOUS.values(), ids=AMBIGUOUS.keys())
async def test_a_request_naming_its_document_or_dry_run_ambiguously_is_refused_and_runs_nothing(
    api, world, key, registered, body
):
    """Which of two ids runs, or a mutation run for real when its client asked for a dry run in a
    value that is not `true`, is not guessed at."""
    cancel = {"id": world.appointments["A"][0]}
    response = await api.http.post(
        "/graphql",
        json={**body(registered), "variables": cancel},
        headers={"Authorization": f"Bearer {key}", "Accept": ACCEPT},
    )
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    still = await by_id(api, key, registered["One"], cancel)
    assert still.data["node"]["status"] == "BOOKED"


async def test_apollos_sha256_hash_looks_up_and_never_registers(api, world, register, trusted_key):
    register("full", APOLLO)
    key = trusted_key("full")
    apollo = ids(APOLLO)
    hashed = {"persistedQuery": {"version": 1, "sha256Hash": apollo["Me"].removeprefix("sha256:")}}
    response = await api.http.post("/graphql", json={"extensions": hashed}, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200 and response.json()["data"]["viewer"]["name"] == "full"
    # Automatic persisted queries' registration (hash and text together) registers nothing on a trusted key.
    text = "query Other { viewer { name } }"
    other = {"persistedQuery": {"version": 1, "sha256Hash": document_id_of(text).removeprefix("sha256:")}}
    sent = await api.query(key, text, extensions=other)
    assert sent.codes == {"TRUSTED_DOCUMENTS_ONLY"}
    again = await api.http.post("/graphql", json={"extensions": other}, headers={"Authorization": f"Bearer {key}"})
    assert again.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"


async def test_a_mutation_by_id_over_get_is_not_run(api, world, key, registered):
    response = await by_id(api, key, registered["Cancel"], {"id": world.appointments["A"][0]}, method="GET")
    assert response.status >= 400 and response.data is None
    follow = await by_id(api, key, registered["One"], {"id": world.appointments["A"][0]})
    assert follow.data["node"]["status"] == "BOOKED"


async def test_a_registered_mutation_runs_by_post(api, world, key, registered):
    response = await by_id(api, key, registered["Cancel"], {"id": world.appointments["A"][0]})
    assert response.errors == [] and response.data["cancelAppointment"]["appointment"]["status"] == "CANCELLED"


async def test_a_removed_document_is_refused_on_the_next_request(api, world, key, registered, sync_engine):
    assert (await by_id(api, key, registered["Me"])).errors == []  # cached by this worker now
    with Session(sync_engine) as session, session.begin():
        service.remove(session, "full", registered["Me"])
    response = await by_id(api, key, registered["Me"])
    assert response.codes == {"PERSISTED_QUERY_NOT_FOUND"}


async def test_the_ledger_records_the_document_id(api, world, key, registered, sync_engine):
    await by_id(api, key, registered["Day"], day_variables(world))
    await by_id(api, key, "sha256:" + "1" * 64)
    await api.query(key, "query Me { viewer { name } }")
    served, unknown, ad_hoc = records(sync_engine)[-3:]
    assert (served.document_id, served.outcome, served.operation_name) == (registered["Day"], "served", "Day")
    assert served.document_hash == registered["Day"].removeprefix("sha256:")
    assert (unknown.document_id, unknown.error_code) == ("sha256:" + "1" * 64, "PERSISTED_QUERY_NOT_FOUND")
    assert (ad_hoc.document_id, ad_hoc.error_code) == (None, "TRUSTED_DOCUMENTS_ONLY")


async def test_a_dry_run_costs_the_least_operation_reads_nothing_and_says_what_is_lacking(api, world, sync_engine):
    key = world.keys["no-contact"]  # open key; appointments:read and patients:identity at A
    day = (
        "query Day($p: ID!, $f: DateTime!, $t: DateTime!) { appointments(practiceId: $p, from: $f, to: $t, "
        "first: 50) { edges { node { id patient { firstName phone } } } } }"
    )
    variables = {"p": world.practice_id("A"), "f": window_args()["from"], "t": window_args()["to"]}
    response = await api.query(key, day, variables, extensions={"dryRun": True})
    assert response.status == 200 and response.errors == [] and response.data is None
    report = response.body["extensions"]["dryRun"]
    assert report["requestedQueryCost"] == report["worstCaseQueryCost"] == 200
    assert report["missingFields"] == ["Patient.phone"] and report["missingScopes"] == ["patients:contact"]
    assert "patients:identity" in report["scopes"] and "Patient.firstName" in report["fields"]
    # the dry run's own price: free, one key sent 134 a second, each in the ledger (helper 53)
    cost = response.body["extensions"]["cost"]
    assert (cost["requestedQueryCost"], cost["actualQueryCost"]) == (OPERATION_COST, OPERATION_COST)
    with Session(sync_engine) as session:
        assert session.scalars(select(Disclosure)).all() == []
    (record,) = records(sync_engine)
    assert (record.outcome, record.requested_cost, record.actual_cost) == ("dry_run", OPERATION_COST, OPERATION_COST)


async def test_a_dry_run_is_refused_when_the_budget_is_spent(make_api, world, sync_engine):
    api = make_api(budget_capacity=3, budget_refill_per_second=0.001)
    query, dry = "{ viewer { name } }", {"dryRun": True}
    answers = [await api.query(world.keys["full"], query, extensions=dry) for _ in range(4)]
    assert [a.codes for a in answers] == [set(), set(), set(), {"RATE_LIMITED"}]
    assert "dryRun" not in answers[-1].body.get("extensions", {})
    assert [r.outcome for r in records(sync_engine)] == ["dry_run"] * 3 + ["refused"]


async def test_a_dry_run_with_incomplete_variables_reports_the_worst_case(api, world):
    query = "query P($n: Int!) { practices(first: $n) { edges { node { name } } } }"
    report = (await api.query(world.keys["full"], query, {}, extensions={"dryRun": True})).body["extensions"]["dryRun"]
    assert report["requestedQueryCost"] == report["worstCaseQueryCost"] == 100
    assert report["missingFields"] == []


async def test_a_dry_run_of_a_registered_document_by_id(api, world, key, registered):
    response = await by_id(api, key, registered["Day"], extensions={"dryRun": True})
    report = response.body["extensions"]["dryRun"]
    assert report["documentId"] == registered["Day"] and report["worstCaseQueryCost"] == 350
    assert report["missingScopes"] == [] and response.data is None
