"""OAuth 2.0 client credentials (issue 19): signed client assertions, short-lived access tokens,
DPoP proof of possession, revocation, key modes and rotation, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from api.data.models import AccessRecord, OAuthClient, Partner, PartnerKey
from api.ledger import exposure as reports
from api.operators import accounts, oauth_clients
from api.settings import Settings
from api.timeutil import utcnow
from tests.identity.workers import app_of
from tests.oauth_client import (
    GRAPHQL_URL,
    TOKEN_URL,
    DPoPKey,
    SigningKey,
    claims,
    hmac_signed,
    register,
    token_form,
    unsigned,
)

VIEWER = "{ viewer { name } }"
READ = "query Read($id: ID!) { practice(id: $id) { name } }"


async def token_response(api, assertion: str, dpop: str | None = None, **extra: str):
    headers = {"DPoP": dpop} if dpop else {}
    return await api.http.post("/oauth/token", data=token_form(assertion, **extra), headers=headers)


async def get_token(api, key: SigningKey, client_id: str, dpop: DPoPKey | None = None) -> str:
    proof = dpop.proof("POST", TOKEN_URL) if dpop else None
    response = await token_response(api, key.sign(claims(client_id)), proof)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


async def decoded(api, token: str):
    """The token as anyone holding the published JWKS verifies it."""
    return jwt.decode(token, KeySet.import_key_set((await api.http.get("/oauth/jwks")).json()), ["ES384"])


async def call(api, token: str, scheme: str = "Bearer", proof: str | None = None, query: str = VIEWER, **variables):
    headers = {"Authorization": f"{scheme} {token}", **({"DPoP": proof} if proof else {})}
    return await api.http.post("/graphql", json={"query": query, "variables": variables}, headers=headers)


async def test_a_valid_assertion_gets_a_short_lived_token_that_reads(sync_engine, api, world, client_key, client_id):
    response = await token_response(api, client_key.sign(claims(client_id)))
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 300
    assert set(body["scope"].split()) == {
        "appointments:read", "appointments:write", "patients:identity", "patients:contact", "appointments:reason"
    }
    served = await call(api, body["access_token"], query=READ, id=world.practice_id("A"))
    assert served.status_code == 200, served.text
    assert served.json()["data"]["practice"]["name"] == "A"
    with Session(sync_engine) as session:  # shown by `client list`, as a key's
        prefix = oauth_clients.client_credential_prefix(session, client_id)
        assert session.scalar(select(PartnerKey.last_used_at).where(PartnerKey.prefix == prefix)) is not None


async def test_the_token_is_verifiable_with_the_published_jwks(api, client_key, client_id):
    token = await get_token(api, client_key, client_id)
    metadata = (await api.http.get("/.well-known/oauth-authorization-server")).json()
    assert metadata["token_endpoint"] == TOKEN_URL
    assert metadata["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    published = (await api.http.get("/oauth/jwks")).json()
    assert all("d" not in k for k in published["keys"])  # public halves only
    decoded = jwt.decode(token, KeySet.import_key_set(published), algorithms=["ES384"])
    assert decoded.header["typ"] == "at+jwt"
    assert decoded.claims["client_id"] == client_id and decoded.claims["exp"] - decoded.claims["iat"] == 300


def _invalid_assertions(key: SigningKey, other: SigningKey, client_id: str) -> dict[str, str]:
    now = int(time.time())
    public_pem = key.key.as_pem(private=False)
    es384 = {"alg": "ES384", "kid": key.kid}
    return {
        "expired": key.sign(claims(client_id, exp=now - 30, iat=now - 90)),
        "future iat": key.sign(claims(client_id, iat=now + 120)),
        "future nbf": key.sign(claims(client_id, nbf=now + 120)),
        "exp beyond 5 minutes": key.sign(claims(client_id, exp=now + 900)),
        "no exp": key.sign(claims(client_id, exp=None)),
        "wrong aud": key.sign(claims(client_id, aud="http://testserver/graphql")),
        "aud of another server": key.sign(claims(client_id, aud="https://elsewhere.example/oauth/token")),
        "aud of this server and another": key.sign(
            claims(client_id, aud=[TOKEN_URL, "https://elsewhere.example/oauth/token"])
        ),
        "aud as a list of one": key.sign(claims(client_id, aud=[TOKEN_URL])),
        "wrong iss": key.sign(claims(client_id, iss="client_0000000000000000")),
        "wrong sub": key.sign(claims(client_id, sub="someone-else")),
        "no jti": key.sign(claims(client_id, jti=None)),
        "unknown kid": key.sign(claims(client_id), kid="key-unknown"),
        "alg none": unsigned({"alg": "none", "kid": key.kid}, claims(client_id)),
        "HS256 with the public key as secret": hmac_signed(public_pem, claims(client_id), key.kid),
        "signed by another key": other.sign(claims(client_id), kid=key.kid),
        "RS256 (not on the allow-list)": SigningKey(key.kid, "RS256").sign(claims(client_id)),
        "not a JWT": "pak_notajwt",
        # What the lookup cannot bind (a lone surrogate failed it with a 503 and a logged traceback).
        # (JSON escapes them: the signature is never reached, any will do.)
        "iss with a lone surrogate": unsigned(es384, claims(client_id, iss="client_\ud800")) + "c2ln",
        "kid with a lone surrogate": unsigned({**es384, "kid": "k\udfff"}, claims(client_id)) + "c2ln",
        "kid with U+0000": unsigned({**es384, "kid": "k\x00"}, claims(client_id)) + "c2ln",
        "iss longer than any client id": key.sign(claims(client_id, iss="c" * 65, sub="c" * 65)),
    }


CASES = list(_invalid_assertions(SigningKey("k"), SigningKey("k"), "c"))


@pytest.mark.parametrize("case", CASES)
async def test_each_invalid_claim_is_the_one_invalid_client(api, client_key, client_id, case):
    assertion = _invalid_assertions(client_key, SigningKey("other"), client_id)[case]
    response = await token_response(api, assertion)
    assert response.status_code == 401
    assert response.json() == {"error": "invalid_client", "error_description": "Client authentication failed."}
    assert response.headers["cache-control"] == "no-store"


async def test_a_replayed_assertion_is_refused(api, client_key, client_id):
    assertion = client_key.sign(claims(client_id))
    assert (await token_response(api, assertion)).status_code == 200
    replayed = await token_response(api, assertion)
    assert replayed.status_code == 401 and replayed.json()["error"] == "invalid_client"


async def test_a_replay_is_refused_by_another_worker(make_api, client_key, client_id):
    first, second = make_api(), make_api()
    assertion = client_key.sign(claims(client_id))
    assert (await token_response(first, assertion)).status_code == 200
    assert (await token_response(second, assertion)).status_code == 401


async def test_another_worker_accepts_the_token(make_api, client_key, client_id):
    """The signing key is in the database: the same in every worker, and after a restart."""
    token = await get_token(make_api(), client_key, client_id)
    assert (await call(make_api(), token)).status_code == 200


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"grant_type": "password"}, "unsupported_grant_type"),
        ({"client_assertion_type": "urn:other"}, "invalid_client"),
        ({"client_assertion": ""}, "invalid_request"),
        ({"scope": "appointments:read"}, "invalid_scope"),  # narrower than the grants: not offered
        ({"scope": "appointments:read admin"}, "invalid_scope"),
        ({"client_id": "client_ffffffffffffffff"}, "invalid_client"),
    ],
)
async def test_rfc_6749_refusals(api, client_key, client_id, form, error):
    response = await api.http.post("/oauth/token", data=token_form(client_key.sign(claims(client_id)), **form))
    assert response.status_code in (400, 401) and response.json()["error"] == error


async def test_a_parameter_twice_is_an_invalid_request(api, client_key, client_id):
    body = "&".join(f"{k}={v}" for k, v in token_form(client_key.sign(claims(client_id))).items())
    response = await api.http.post(
        "/oauth/token", content=body + "&grant_type=client_credentials",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


async def test_scope_is_the_partners_grants(sync_engine, api, world):
    key = SigningKey("reader-key")
    reader = register(sync_engine, "reader", key)
    response = await token_response(api, key.sign(claims(reader)))
    assert response.json()["scope"] == "appointments:read"
    wider = await token_response(api, key.sign(claims(reader)), scope="appointments:read patients:contact")
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"
    nothing = SigningKey("nothing")
    unconnected = register(sync_engine, "unconnected", nothing)
    assert (await token_response(api, nothing.sign(claims(unconnected)))).json()["error"] == "invalid_scope"


async def test_a_token_is_refused_once_its_partners_grant_is_revoked(sync_engine, api, client_key, client_id):
    token = await get_token(api, client_key, client_id)
    assert (await call(api, token)).status_code == 200
    with Session(sync_engine) as session, session.begin():
        accounts.revoke_grant(session, "full", "A")
    refused = await call(api, token)
    assert refused.status_code == 401
    assert refused.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]


async def test_a_token_is_refused_once_its_client_or_partner_is_revoked(sync_engine, api, client_key, client_id):
    token = await get_token(api, client_key, client_id)
    with Session(sync_engine) as session, session.begin():
        accounts.set_partner_status(session, "full", accounts.PartnerStatus.SUSPENDED)
    assert (await call(api, token)).status_code == 401
    with Session(sync_engine) as session, session.begin():
        accounts.set_partner_status(session, "full", accounts.PartnerStatus.ACTIVE)
    assert (await call(api, token)).status_code == 200
    with Session(sync_engine) as session, session.begin():
        oauth_clients.revoke_client(session, client_id)
    assert (await call(api, token)).status_code == 401
    assert (await token_response(api, client_key.sign(claims(client_id)))).status_code == 401


async def test_a_quarantined_client_gets_no_token_until_it_is_released(sync_engine, api, client_key, client_id):
    """Its tokens are refused (KEY_QUARANTINED) as its credential is; the token endpoint says so too, to the
    key's holder only (after the assertion's signature), rather than issue tokens nothing accepts."""
    token = await get_token(api, client_key, client_id)
    with Session(sync_engine) as session, session.begin():
        credential = session.scalar(select(OAuthClient).where(OAuthClient.client_id == client_id)).key_id
        session.execute(update(PartnerKey).where(PartnerKey.id == credential).values(quarantined_at=utcnow()))
        prefix = session.get(PartnerKey, credential).prefix
    assert (await call(api, token)).json()["errors"][0]["extensions"]["code"] == "KEY_QUARANTINED"
    refused = await token_response(api, client_key.sign(claims(client_id)))
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    assert "quarantined" in refused.json()["error_description"]
    forged = await token_response(api, SigningKey("key-1").sign(claims(client_id)))  # not its key: told nothing more
    assert forged.json()["error_description"] == "Client authentication failed."
    with Session(sync_engine) as session, session.begin():
        accounts.release_key(session, prefix)
    assert await get_token(api, client_key, client_id)


async def test_a_forged_or_tampered_token_is_refused(api, client_key, client_id):
    token = await get_token(api, client_key, client_id)
    header, body, signature = token.split(".")
    forged_claims = {"iss": "http://testserver", "aud": "http://testserver", "client_id": client_id, "scope": "",
                     "gv": 0, "jti": "x", "exp": int(time.time()) + 60}
    forged = SigningKey("forger").sign(forged_claims, typ="at+jwt")
    for bad in (f"{header}.{body}.{signature[::-1]}", forged, f"{header}.{body[:-2]}.{signature}"):
        assert (await call(api, bad)).status_code == 401


async def test_the_host_header_does_not_name_the_issuer(api, client_key, client_id):
    """Unconfigured, the issuer is the address the server listens on: with the Host header naming
    another server, an assertion made for that server's token endpoint was accepted, and the token
    named it (audience injection; outside review, helper 50)."""
    elsewhere = {"Host": "evil.example", "X-Forwarded-Proto": "https"}
    foreign = client_key.sign(claims(client_id, aud="https://evil.example/oauth/token"))
    response = await api.http.post("/oauth/token", data=token_form(foreign), headers=elsewhere)
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"
    metadata = (await api.http.get("/.well-known/oauth-authorization-server", headers=elsewhere)).json()
    assert metadata["issuer"] == "http://testserver" and metadata["token_endpoint"] == TOKEN_URL
    own = await api.http.post("/oauth/token", data=token_form(client_key.sign(claims(client_id))), headers=elsewhere)
    assert own.status_code == 200  # the client's own assertion, whatever Host the request names
    assert (await decoded(api, own.json()["access_token"])).claims["iss"] == "http://testserver"


# DPoP ------------------------------------------------------------------------------------------


async def test_a_dpop_bound_token_needs_a_proof_of_each_request(api, client_key, client_id):
    dpop = DPoPKey()
    response = await token_response(api, client_key.sign(claims(client_id)), dpop.proof("POST", TOKEN_URL))
    assert response.json()["token_type"] == "DPoP"
    token = response.json()["access_token"]
    cnf = (await decoded(api, token)).claims["cnf"]
    assert cnf == {"jkt": dpop.key.thumbprint()}
    served = await call(api, token, "DPoP", dpop.proof("POST", GRAPHQL_URL, token))
    assert served.status_code == 200, served.text

    proof = dpop.proof("POST", GRAPHQL_URL, token)
    refusals = {
        "no proof": await call(api, token, "DPoP"),
        "as a bearer token": await call(api, token, "Bearer", dpop.proof("POST", GRAPHQL_URL, token)),
        "another key's proof": await call(api, token, "DPoP", DPoPKey().proof("POST", GRAPHQL_URL, token)),
        "proof for another URL": await call(api, token, "DPoP", dpop.proof("POST", TOKEN_URL, token)),
        "proof for another method": await call(api, token, "DPoP", dpop.proof("GET", GRAPHQL_URL, token)),
        "proof without ath": await call(api, token, "DPoP", dpop.proof("POST", GRAPHQL_URL)),
        "proof for another token": await call(api, token, "DPoP", dpop.proof("POST", GRAPHQL_URL, token + "x")),
        "stale proof": await call(
            api, token, "DPoP", dpop.proof("POST", GRAPHQL_URL, token, iat=int(time.time()) - 600)
        ),
        "first use": await call(api, token, "DPoP", proof),
        "replayed proof": await call(api, token, "DPoP", proof),
    }
    assert refusals.pop("first use").status_code == 200
    assert {name: r.status_code for name, r in refusals.items()} == dict.fromkeys(refusals, 401)
    assert all(r.headers["www-authenticate"].startswith("DPoP ") for r in refusals.values())


@pytest.mark.parametrize(("alg", "bits"), [("RS256", 2048), ("RS384", 3072), ("RS256", 4096), ("ES256", 0)])
async def test_every_advertised_proof_algorithm_binds_a_token(api, client_key, client_id, alg, bits):
    """An RSA key's `jwk` makes a header beyond joserfc's default 512 bytes: RSA proofs were refused
    from 2048 bits up, while 1024-bit ones passed."""
    metadata = (await api.http.get("/.well-known/oauth-authorization-server")).json()
    assert alg in metadata["dpop_signing_alg_values_supported"]
    dpop = DPoPKey(alg, bits)
    response = await token_response(api, client_key.sign(claims(client_id)), dpop.proof("POST", TOKEN_URL))
    assert response.status_code == 200 and response.json()["token_type"] == "DPoP", response.text
    token = response.json()["access_token"]
    assert (await call(api, token, "DPoP", dpop.proof("POST", GRAPHQL_URL, token))).status_code == 200


@pytest.mark.filterwarnings("ignore:Key size should be")  # joserfc's own warning, about the weak key
async def test_a_proof_by_a_weak_rsa_key_is_refused(api, client_key, client_id):
    """Below the 2048 bits a client's own assertion key needs (oauth_clients.MIN_RSA_BITS)."""
    weak = DPoPKey("RS256", 1024)
    response = await token_response(api, client_key.sign(claims(client_id)), weak.proof("POST", TOKEN_URL))
    assert response.status_code == 400 and response.json()["error"] == "invalid_dpop_proof"


def test_a_proof_key_with_a_huge_public_exponent_is_refused_before_any_verification():
    """A 3072-bit exponent made each RSA verification 100 times slower (helper 51)."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    from api.identity.dpop import _sound_rsa

    modulus = RSAKey.generate_key(3072).raw_value.public_key().public_numbers().n
    huge = RSAKey.import_key(rsa.RSAPublicNumbers(2**3000 + 1, modulus).public_key())
    usual = RSAKey.import_key(rsa.RSAPublicNumbers(65537, modulus).public_key())
    assert not _sound_rsa(huge) and _sound_rsa(usual)


async def test_an_invalid_proof_at_the_token_endpoint_is_refused(api, client_key, client_id):
    dpop = DPoPKey()
    response = await token_response(api, client_key.sign(claims(client_id)), dpop.proof("POST", GRAPHQL_URL))
    assert response.status_code == 400 and response.json()["error"] == "invalid_dpop_proof"


async def test_an_unbound_token_is_refused_under_the_dpop_scheme(api, client_key, client_id):
    token = await get_token(api, client_key, client_id)
    assert (await call(api, token, "DPoP", DPoPKey().proof("POST", GRAPHQL_URL, token))).status_code == 401


# Key modes, rotation, the ledger ---------------------------------------------------------------


async def test_a_partner_that_requires_tokens_refuses_its_api_keys(sync_engine, api, world, client_key, client_id):
    assert (await api.query(world.keys["full"], VIEWER)).status == 200
    with Session(sync_engine) as session, session.begin():
        oauth_clients.set_tokens_required(session, "full", True)
    refused = await api.query(world.keys["full"], VIEWER)
    assert refused.status == 401 and refused.codes == {"UNAUTHENTICATED"}
    assert "only OAuth access tokens" in refused.errors[0]["message"]
    assert (await api.query(world.keys["other"], VIEWER)).status == 200  # other partners are untouched
    assert (await call(api, await get_token(api, client_key, client_id))).status_code == 200


async def test_a_partner_that_requires_dpop_is_neither_issued_nor_served_bearer_tokens(
    sync_engine, api, world, client_key, client_id
):
    """A bearer token replays for its whole life: the operator can require every token of the partner
    bound to a key (outside review, helper 50: under `require-tokens`, bearer tokens replayed 10 times)."""
    bearer = await get_token(api, client_key, client_id)  # issued before the requirement
    with Session(sync_engine) as session, session.begin():
        oauth_clients.set_dpop_required(session, "full", True)
    assert (await api.query(world.keys["full"], VIEWER)).status == 401  # an API key is a bearer credential too
    refused = await token_response(api, client_key.sign(claims(client_id)))
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_dpop_proof"
    assert "DPoP" in refused.json()["error_description"]
    served_before = await call(api, bearer)
    assert served_before.status_code == 401 and served_before.headers["www-authenticate"].startswith("DPoP ")
    dpop = DPoPKey()
    bound = await token_response(api, client_key.sign(claims(client_id)), dpop.proof("POST", TOKEN_URL))
    token = bound.json()["access_token"]
    assert bound.json()["token_type"] == "DPoP"
    assert (await call(api, token, "DPoP", dpop.proof("POST", GRAPHQL_URL, token))).status_code == 200
    with Session(sync_engine) as session, session.begin():
        oauth_clients.set_dpop_required(session, "full", False)
    assert (await call(api, await get_token(api, client_key, client_id))).status_code == 200


async def test_key_rotation_with_two_live_kids(sync_engine, api, client_key, client_id):
    new = SigningKey("key-2", "RS384")
    with Session(sync_engine) as session, session.begin():
        keys = oauth_clients.add_client_keys(session, client_id, {"keys": [new.public_jwk()]})
    assert keys.kids == ["key-1", "key-2"]
    for key in (client_key, new):  # both live at once
        assert (await token_response(api, key.sign(claims(client_id)))).status_code == 200
    with Session(sync_engine) as session, session.begin():
        oauth_clients.retire_client_key(session, client_id, "key-1")
    assert (await token_response(api, client_key.sign(claims(client_id)))).status_code == 401
    assert (await token_response(api, new.sign(claims(client_id)))).status_code == 200


def test_registration_refuses_private_or_weak_keys(sync_engine, world):
    key = SigningKey("k")
    private = {"keys": [{**key.key.as_dict(private=True), "kid": "k"}]}
    with Session(sync_engine) as session, pytest.raises(accounts.OperatorError, match="private"):
        oauth_clients.register_client(session, "full", private, None)
    hmac_key = {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}
    with Session(sync_engine) as session, pytest.raises(accounts.OperatorError, match=r"EC .* or RSA"):
        oauth_clients.register_client(session, "full", hmac_key, None)


async def test_the_ledger_records_the_client_and_the_token(sync_engine, api, world, client_key, client_id):
    token = await get_token(api, client_key, client_id)
    await call(api, token)
    await api.query(world.keys["full"], VIEWER)
    jti = (await decoded(api, token)).claims["jti"]
    with Session(sync_engine) as session:
        rows = session.execute(select(AccessRecord.client_id, AccessRecord.token_jti, AccessRecord.key_prefix)).all()
        credential = session.scalar(
            select(PartnerKey.prefix).join(OAuthClient, OAuthClient.key_id == PartnerKey.id).where(
                OAuthClient.client_id == client_id)
        )  # fmt: skip
    assert credential and (client_id, jti, credential) in rows  # the client's credential, not the token's text
    assert (None, None, world.keys["full"].split("_")[1]) in rows


async def test_signing_key_rotation_keeps_issued_tokens_until_retired(sync_engine, make_api, client_key, client_id):
    api = make_api()
    token = await get_token(api, client_key, client_id)
    old_kid = (await decoded(api, token)).header["kid"]
    with Session(sync_engine) as session, session.begin():
        new_kid = oauth_clients.rotate_signing_key(session, Settings(secret_key="test-secret"))
    fresh = make_api()  # a worker started after the rotation
    assert {k["kid"] for k in (await fresh.http.get("/oauth/jwks")).json()["keys"]} == {old_kid, new_kid}
    assert (await call(fresh, token)).status_code == 200
    with Session(sync_engine) as session, session.begin():
        oauth_clients.retire_signing_key(session, old_kid)
    assert (await call(make_api(), token)).status_code == 401


async def test_a_retired_signing_key_signs_and_verifies_nothing_from_the_next_request(
    sync_engine, api, client_key, client_id
):
    """In a worker that read the keys moments before: it kept signing with the retired key, and serving
    what it signed, until its next read 30 s later (outside review, helper 50)."""
    token = await get_token(api, client_key, client_id)
    old_kid = (await decoded(api, token)).header["kid"]
    with Session(sync_engine) as session, session.begin():
        new_kid = oauth_clients.rotate_signing_key(session, Settings(secret_key="test-secret"))
        oauth_clients.retire_signing_key(session, old_kid)
    assert (await call(api, token)).status_code == 401
    fresh = await get_token(api, client_key, client_id)
    assert (await decoded(api, fresh)).header["kid"] == new_kid
    assert (await call(api, fresh)).status_code == 200


def test_partners_accept_keys_until_required(sync_engine, world):
    with Session(sync_engine) as session:
        assert not any(session.scalars(select(Partner.tokens_required)))


async def test_the_exposure_report_narrows_to_one_client(sync_engine, api, world, client_key, client_id):
    """What the client was shown, apart from what the partner's key was shown."""
    token = await get_token(api, client_key, client_id)
    patient = "query P($id: ID!) { node(id: $id) { ... on Patient { firstName } } }"
    assert (await call(api, token, query=patient, id=world.patients["A"][0])).status_code == 200
    assert (await api.query(world.keys["full"], patient, {"id": world.patients["A"][1]})).status == 200
    since, until = utcnow() - timedelta(hours=1), utcnow() + timedelta(minutes=1)
    with Session(sync_engine) as session:
        prefix = oauth_clients.client_credential_prefix(session, client_id)
        by_client = reports.partner_exposure(session, "full", since, until, key_prefix=prefix)
        whole = reports.partner_exposure(session, "full", since, until)
    assert [p.patient_id for p in by_client.patients] == [world.patients["A"][0]]
    assert {p.patient_id for p in whole.patients} == set(world.patients["A"][:2])


async def test_a_stolen_dpop_token_cannot_hold_its_partners_places(make_api, world, client_key, client_id):
    """The token's text alone is not its partner's: a flood of it without proofs, from the thief's address,
    is that address's (screened, queued as it), so the partner's own requests are still served."""
    api = make_api(failed_requests_per_address=5, trusted_proxies="127.0.0.0/8")  # the thief: X-Forwarded-For
    dpop = DPoPKey()
    token = await get_token(api, client_key, client_id, dpop)
    assert (await call(api, token, "DPoP", dpop.proof("POST", GRAPHQL_URL, token))).status_code == 200
    assert (await api.query(world.keys["full"], VIEWER)).status == 200  # the partner's key, known to the worker
    thief = {"Authorization": f"DPoP {token}", "X-Forwarded-For": "203.0.113.66"}
    flood = await asyncio.gather(
        *(api.http.post("/graphql", json={"query": VIEWER}, headers=thief) for _ in range(120))
    )
    statuses = [response.status_code for response in flood]
    assert statuses.count(401) <= 5 and set(statuses) <= {401, 429}, statuses
    assert (await api.query(world.keys["full"], VIEWER)).data == {"viewer": {"name": "full"}}
    assert (await call(api, token, "DPoP", dpop.proof("POST", GRAPHQL_URL, token))).status_code == 200


async def test_a_burst_of_a_proven_dpop_token_from_its_client_is_not_taken_for_a_flood(make_api, client_key, client_id):
    """Each request of a DPoP-bound token is proven anew, so its text never stands for its partner; but
    once proven from an address, its burst there passes the address screen (it was refused 429 as if
    it carried no key), even after requests without a key from the same address."""
    api = make_api(failed_requests_per_address=5)
    dpop = DPoPKey()
    token = await get_token(api, client_key, client_id, dpop)
    assert (await call(api, token, "DPoP", dpop.proof("POST", GRAPHQL_URL, token))).status_code == 200
    for _ in range(3):
        assert (await api.http.post("/graphql", json={"query": VIEWER})).status_code == 401
    burst = await asyncio.gather(
        *(call(api, token, "DPoP", dpop.proof("POST", GRAPHQL_URL, token)) for _ in range(30))
    )
    assert [response.status_code for response in burst] == [200] * 30


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the endpoint's reading, not the database's
async def test_a_token_request_whose_body_stalls_or_vanishes_is_answered_without_a_server_error(make_api):
    """As /graphql reads a body: a slow one is cut off (408, the connection closed), a client that
    hangs up mid-body is nobody to answer (499), and neither is logged as a failure of the server."""
    app = app_of(make_api(body_timeout_seconds=0.2))
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/oauth/token", "raw_path": b"/oauth/token", "query_string": b"", "root_path": "",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/x-www-form-urlencoded"),
                    (b"content-length", b"100")],
        "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
    }  # fmt: skip

    async def answer(then: str) -> list[dict]:
        pending = [{"type": "http.request", "body": b"grant_type=", "more_body": True}]
        sent: list[dict] = []

        async def receive() -> dict:
            if pending:
                return pending.pop()
            if then == "silence":
                await asyncio.sleep(30)  # past the timeout: the endpoint stops waiting first
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            sent.append(message)

        await app(scope, receive, send)
        return sent

    slow = await answer("silence")
    assert slow[0]["status"] == 408 and (b"connection", b"close") in slow[0]["headers"]
    assert b'"error":"invalid_request"' in slow[1]["body"]
    gone = await answer("hang-up")
    assert gone[0]["status"] == 499


async def test_a_jti_that_is_not_utf_8_is_hashed_as_it_came_not_a_server_error(api, client_key, client_id):
    """A lone surrogate is valid JSON (`"\\ud800"`), not UTF-8: the replay cache's hash of it failed
    with a 503 and a logged traceback, after the signature was verified."""
    from joserfc import jws

    payload = json.dumps(claims(client_id, jti="jti-\ud800")).encode()  # ASCII: the surrogate escaped
    header = {"alg": "ES384", "kid": client_key.kid}
    assertion = jws.serialize_compact(header, payload, client_key.key, algorithms=["ES384"])
    assert (await token_response(api, assertion)).status_code == 200
    assert (await token_response(api, assertion)).status_code == 401  # and its replay is one
