"""The access tokens' signing keys are sealed with the servers' secret (api/identity/key_seal.py): a
copy of the database signs no token, and a token outliving the server's lifetime is refused though
well signed (a key taken together with its secret)."""

from __future__ import annotations

import json
import time

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.data.database import make_session_factory
from api.data.models import OAuthClient, OAuthSigningKey, Partner
from api.identity import access_tokens
from api.identity.key_seal import KeySeal
from api.identity.signing_keys import SigningKeys
from api.timeutil import utcnow
from tests.identity.test_client_credentials import call, decoded, get_token

ISSUER = "http://testserver"  # the in-process client's base URL, as the token endpoint names it


async def test_the_database_holds_no_private_key_in_clear(sync_engine, api, client_key, client_id):
    kid = (await decoded(api, await get_token(api, client_key, client_id))).header["kid"]
    with Session(sync_engine) as session:
        stored = session.scalars(select(OAuthSigningKey.private_jwk)).all()
    assert stored and all(value.startswith("aesgcm:") for value in stored)
    for value in stored:
        with pytest.raises(ValueError):
            json.loads(value)  # a thief's copy has nothing to import as a key
    seal = KeySeal(b"test-secret")
    opened = seal.open(kid, stored[0])
    assert opened is not None and "d" in json.loads(opened[0]) and opened[1]  # the servers' secret opens it
    assert seal.open("another-kid", stored[0]) is None  # bound to its row
    assert KeySeal(b"a guess").open(kid, stored[0]) is None


async def test_a_server_with_another_secret_signs_and_verifies_with_keys_of_its_own(
    make_api, client_key, client_id
):
    first = make_api()
    token = await get_token(first, client_key, client_id)
    other = make_api(secret_key="another-secret")
    assert (await call(other, token)).status_code == 401  # its keys do not open there
    own = await get_token(other, client_key, client_id)
    assert (await call(other, own)).status_code == 200
    published = {k["kid"] for k in (await other.http.get("/oauth/jwks")).json()["keys"]}
    assert published == {(await decoded(other, own)).header["kid"]}


async def test_a_rotated_secret_still_opens_the_keys_it_sealed_and_signs_with_a_key_of_its_own(
    make_api, client_key, client_id
):
    """A key sealed with the previous secret verifies during the grace period, but signs no more: a
    leaked secret (the reason to rotate it) and a copy of the database would still sign (helper 51)."""
    token = await get_token(make_api(), client_key, client_id)
    rotated = make_api(secret_key="the-new-secret", secret_key_previous="test-secret")
    assert (await call(rotated, token)).status_code == 200
    fresh = await get_token(rotated, client_key, client_id)
    assert (await decoded(rotated, fresh)).header["kid"] != (await decoded(rotated, token)).header["kid"]
    assert (await call(rotated, fresh)).status_code == 200


async def test_a_leaked_previous_secret_signs_nothing_accepted_after_the_rotation(
    sync_engine, make_api, client_key, client_id
):
    """The key it sealed still verifies the tokens the server signed before, but a token it signed
    after the first key of the new secret was made is a thief's (helper 52)."""
    before = await get_token(make_api(), client_key, client_id)
    with Session(sync_engine) as session:
        old = session.scalars(select(OAuthSigningKey)).one()
        kid, stored = old.kid, old.private_jwk
        grants_version = session.scalar(
            select(Partner.grants_version).join(OAuthClient).where(OAuthClient.client_id == client_id)
        )
    rotated = make_api(secret_key="the-new-secret", secret_key_previous="test-secret")
    await get_token(rotated, client_key, client_id)  # the first key of the new secret
    assert (await call(rotated, before)).status_code == 200
    opened = KeySeal(b"test-secret").open(kid, stored)
    assert opened is not None
    private, now = ECKey.import_key(json.loads(opened[0])), int(time.time()) + 1
    claims = {"iss": ISSUER, "aud": ISSUER, "sub": client_id, "client_id": client_id, "scope": "appointments:read",
              "gv": grants_version, "jti": "forged", "iat": now, "exp": now + 300}  # fmt: skip
    forged = jwt.encode({"alg": "ES384", "typ": "at+jwt", "kid": kid}, claims, private, algorithms=["ES384"])
    assert (await call(rotated, forged)).status_code == 401


@pytest.mark.parametrize(("lifetime", "status"), [(300, 200), (301, 401), (10 * 365 * 86400, 401)])
async def test_a_token_living_longer_than_the_servers_lifetime_is_refused(
    async_engine, make_api, client_key, client_id, lifetime, status
):
    """Signed with the server's own key (as a thief holding the database and its secret could)."""
    api = make_api()
    await get_token(api, client_key, client_id)  # the server's signing key
    keys = SigningKeys(make_session_factory(async_engine), KeySeal(b"test-secret"))
    token, _ = await access_tokens.issue(
        keys, ISSUER, client_id, ["appointments:read"], await _grants_version(async_engine, client_id),
        utcnow(), lifetime, None,
    )  # fmt: skip
    assert (await call(api, token)).status_code == status


async def test_a_token_without_its_issue_time_is_refused(async_engine, make_api, client_key, client_id):
    api = make_api()
    good = await get_token(api, client_key, client_id)
    keys = SigningKeys(make_session_factory(async_engine), KeySeal(b"test-secret"))
    signer = await keys.signer(utcnow())
    claims = dict((await decoded(api, good)).claims)
    del claims["iat"]
    stripped = jwt.encode({"alg": "ES384", "typ": "at+jwt", "kid": signer.kid}, claims, signer, algorithms=["ES384"])
    assert isinstance(signer, ECKey) and (await call(api, stripped)).status_code == 401


async def _grants_version(async_engine, client_id: str) -> int:
    async with make_session_factory(async_engine)() as session:
        statement = select(Partner.grants_version).join(OAuthClient).where(OAuthClient.client_id == client_id)
        return (await session.execute(statement)).scalar_one()
