"""Every bad key gets one and the same answer: 401, UNAUTHENTICATED, no hint of why."""

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.data.models import AccessRecord, KeyMode, PartnerKey
from api.operators import accounts as operators
from api.timeutil import utcnow

QUERY = "{ viewer { name } }"


def sanitized(response):
    body = response.body
    for error in body["errors"]:
        error["extensions"].pop("requestId")
    return response.status, body, response.headers.get("www-authenticate")


async def test_valid_key_is_served(api, world):
    assert (await api.query(world.keys["full"], QUERY)).data == {"viewer": {"name": "full"}}


async def test_every_kind_of_bad_key_gets_the_same_answer(api, world, sync_engine):
    good = world.keys["full"]
    with Session(sync_engine) as session, session.begin():
        expiring = operators.issue_partner_key(
            session, "full", expires_at=utcnow() + timedelta(days=1), mode=KeyMode.OPEN
        )
        session.query(PartnerKey).filter_by(prefix=expiring.prefix).one().expires_at = utcnow() - timedelta(seconds=1)
        revoked = operators.issue_partner_key(session, "full", mode=KeyMode.OPEN)
        operators.revoke_key(session, revoked.prefix)
    prefix_of_good = good.split("_")[1]
    candidates = {
        "missing": None,
        "empty": "",
        "garbage": "hello",
        "unknown prefix": "pak_000000000000_" + good.split("_", 2)[2],
        "wrong secret": f"pak_{prefix_of_good}_" + "A" * 43,
        "truncated": good[:-1],
        "expired key": expiring.token,
        "revoked key": revoked.token,
        "suspended partner": world.keys["suspended"],
    }
    answers = {name: sanitized(await api.query(token, QUERY)) for name, token in candidates.items()}
    reference = answers.pop("missing")
    assert reference[0] == 401
    assert reference[1]["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert reference[2].startswith("Bearer")
    for name, answer in answers.items():
        assert answer == reference, name


async def test_an_api_key_under_the_dpop_scheme_is_refused_and_its_attempt_recorded(api, world, sync_engine):
    # DPoP binds an access token to a key its holder proves; no proof binds an API key. Served, it was
    # recorded without its key: the ledger's key came from the header under Bearer only.
    key = world.keys["full"]
    response = await api.http.post("/graphql", json={"query": QUERY}, headers={"Authorization": f"DPoP {key}"})
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    with Session(sync_engine) as session:
        attempt = session.execute(select(AccessRecord).order_by(AccessRecord.id.desc()).limit(1)).scalar_one()
    assert (attempt.outcome, attempt.key_prefix, attempt.partner_id) == ("refused", key.split("_")[1], None)


@pytest.mark.parametrize("header", ["Basic abc", "Bearer", "bearer  ", "Token x", "Bearer a b c"])
async def test_malformed_authorization_headers_are_refused(api, world, header):
    response = await api.http.post("/graphql", json={"query": QUERY}, headers={"Authorization": header})
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_introspection_needs_a_key(api, world):
    response = await api.query(None, "{ __schema { types { name } } }")
    assert response.status == 401
