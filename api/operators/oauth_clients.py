"""Operator use cases for OAuth: partners' clients and their public keys, the server's signing keys,
and partners that must use tokens. Shared by the CLI and the tests.

A client's public keys are read from a JWKS (a file, or a URL read once, at registration or when
keys are added): the token endpoint never fetches anything, so a client cannot make the server call
out. Each key is named by its `kid`; several live at once during a rotation, and a retired one is
refused from the next token request on. Tokens already issued live out their minutes: revoking the
client (or its partner, or a grant) refuses them at once.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey, import_key
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.data.models import KeyMode, OAuthClient, OAuthClientKey, OAuthSigningKey, Partner, PartnerKey
from api.identity.jose_rules import ASSERTION_ALGORITHMS, MIN_RSA_BITS
from api.identity.key_seal import KeySeal
from api.identity.keys import issue_key
from api.identity.signing_keys import add_signing_key
from api.operators.accounts import OperatorError, find_partner
from api.settings import Settings
from api.timeutil import utcnow

__all__ = [
    "ClientKeys",
    "add_client_keys",
    "client_credential_prefix",
    "find_client",
    "list_clients",
    "read_jwks",
    "register_client",
    "retire_client_key",
    "retire_signing_key",
    "revoke_client",
    "rotate_signing_key",
    "set_dpop_required",
    "set_tokens_required",
]

JWKS_FETCH_SECONDS = 10
JWKS_URL_LENGTH = 500  # oauth_clients.jwks_url


@dataclass(frozen=True)
class ClientKeys:
    client_id: str
    partner: str
    kids: list[str]  # live ones


def read_jwks(file: str | None = None, url: str | None = None) -> dict[str, Any]:
    """The JWKS of a file or a URL (exactly one of them)."""
    if (file is None) == (url is None):
        raise OperatorError("give --jwks FILE or --jwks-url URL")
    if url is not None and len(url) > JWKS_URL_LENGTH:
        raise OperatorError(f"a JWKS URL has at most {JWKS_URL_LENGTH} characters")
    try:
        if file is not None:
            with open(file, encoding="utf-8") as handle:
                document = json.load(handle)
        else:
            assert url is not None
            response = httpx.get(url, timeout=JWKS_FETCH_SECONDS, follow_redirects=False)
            response.raise_for_status()
            document = response.json()
    except (OSError, ValueError, httpx.HTTPError) as error:
        raise OperatorError(f"cannot read the JWKS: {error}") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list) or not document["keys"]:
        raise OperatorError('a JWKS is a JSON object with a non-empty "keys" list')
    return document


def _public_keys(jwks: dict[str, Any]) -> dict[str, str]:
    """Each key of the JWKS by kid, as public JWK JSON; refuses what could not sign an allowed assertion."""
    keys: dict[str, str] = {}
    for jwk in jwks["keys"]:
        kid = jwk.get("kid") if isinstance(jwk, dict) else None
        if not isinstance(kid, str) or not 0 < len(kid) <= 200:
            raise OperatorError("every key needs a kid (1 to 200 characters)")
        if kid in keys:
            raise OperatorError(f"kid {kid!r} appears twice")
        if jwk.get("kty") not in ("EC", "RSA") or jwk.get("alg", ASSERTION_ALGORITHMS[0]) not in ASSERTION_ALGORITHMS:
            raise OperatorError(f"key {kid!r}: an EC (ES384) or RSA (RS384) key is required")
        try:
            key = import_key(jwk)
        except (JoseError, ValueError, TypeError, KeyError) as error:
            raise OperatorError(f"key {kid!r} is not a valid JWK: {error}") from None
        if key.is_private:
            raise OperatorError(f"key {kid!r} holds a private key: register only the public JWKS")
        if isinstance(key, RSAKey) and key.raw_value.key_size < MIN_RSA_BITS:
            raise OperatorError(f"key {kid!r}: RSA keys have at least {MIN_RSA_BITS} bits")
        keys[kid] = json.dumps(key.as_dict(private=False) | {"kid": kid})
    return keys


def find_client(session: Session, client_id: str) -> OAuthClient:
    client = session.scalar(select(OAuthClient).where(OAuthClient.client_id == client_id))
    if client is None:
        raise OperatorError(f"no OAuth client {client_id!r}")
    return client


def _live_kids(session: Session, client: OAuthClient) -> list[str]:
    return list(
        session.scalars(
            select(OAuthClientKey.kid)
            .where(OAuthClientKey.client_id == client.id, OAuthClientKey.retired_at.is_(None))
            .order_by(OAuthClientKey.id)
        )
    )


def register_client(
    session: Session, partner_name: str, jwks: dict[str, Any], jwks_url: str | None, mode: KeyMode = KeyMode.TRUSTED
) -> ClientKeys:
    """A new client of the partner with the JWKS's keys; its credential row is a key whose secret
    is thrown away, so that it can never be used as a bearer key. Its `mode` is that of a key: trusted
    runs the partner's registered documents only (api/documents/)."""
    partner = find_partner(session, partner_name)
    keys = _public_keys(jwks)
    client_id = f"client_{secrets.token_hex(8)}"
    credential = issue_key()
    key = PartnerKey(
        partner_id=partner.id, prefix=credential.prefix, secret_hash=credential.secret_hash, label=f"OAuth {client_id}",
        mode=mode,
    )
    session.add(key)
    session.flush()
    client = OAuthClient(client_id=client_id, partner_id=partner.id, key_id=key.id, jwks_url=jwks_url)
    session.add(client)
    session.flush()
    session.add_all(OAuthClientKey(client_id=client.id, kid=kid, jwk=jwk) for kid, jwk in keys.items())
    session.flush()
    return ClientKeys(client_id, partner.name, list(keys))


def add_client_keys(session: Session, client_id: str, jwks: dict[str, Any]) -> ClientKeys:
    """Adds the JWKS's new keys (rotation: the new key lives beside the old one until it is retired).
    A kid already registered, live or retired, is refused: a kid names one key for good."""
    client = find_client(session, client_id)
    keys = _public_keys(jwks)
    known = set(session.scalars(select(OAuthClientKey.kid).where(OAuthClientKey.client_id == client.id)))
    if taken := sorted(set(keys) & known):
        raise OperatorError(f"kid already registered for {client_id}: {', '.join(taken)}")
    session.add_all(OAuthClientKey(client_id=client.id, kid=kid, jwk=jwk) for kid, jwk in keys.items())
    session.flush()
    return ClientKeys(client_id, client_partner(session, client), _live_kids(session, client))


def client_partner(session: Session, client: OAuthClient) -> str:
    return session.scalars(select(Partner.name).where(Partner.id == client.partner_id)).one()


def retire_client_key(session: Session, client_id: str, kid: str) -> ClientKeys:
    """Refuses the key's assertions from the next token request on."""
    client = find_client(session, client_id)
    key = session.scalar(
        select(OAuthClientKey).where(OAuthClientKey.client_id == client.id, OAuthClientKey.kid == kid)
    )
    if key is None or key.retired_at is not None:
        raise OperatorError(f"{client_id} has no live key {kid!r}")
    key.retired_at = utcnow()
    session.flush()
    return ClientKeys(client_id, client_partner(session, client), _live_kids(session, client))


def client_credential_prefix(session: Session, client_id: str) -> str:
    """The prefix of the client's credential key, under which the ledger records its requests."""
    client = find_client(session, client_id)
    return session.scalars(select(PartnerKey.prefix).where(PartnerKey.id == client.key_id)).one()


def revoke_client(session: Session, client_id: str) -> OAuthClient:
    """No more tokens, and its tokens refused from the next request on (its credential is revoked)."""
    client = find_client(session, client_id)
    key = session.get(PartnerKey, client.key_id)
    if key is not None and key.revoked_at is None:
        key.revoked_at = utcnow()
    return client


def list_clients(session: Session, partner_name: str) -> list[tuple[OAuthClient, PartnerKey, list[str]]]:
    partner = find_partner(session, partner_name)
    rows = session.execute(
        select(OAuthClient, PartnerKey)
        .join(PartnerKey, PartnerKey.id == OAuthClient.key_id)
        .where(OAuthClient.partner_id == partner.id)
        .order_by(OAuthClient.id)
    ).all()
    return [(client, key, _live_kids(session, client)) for client, key in rows]


def set_tokens_required(session: Session, partner_name: str, required: bool) -> Partner:
    """When required, the partner's API keys are refused: only access tokens are served (and while
    DPoP is required, whatever this says: `set_dpop_required`)."""
    partner = find_partner(session, partner_name)
    partner.tokens_required = required
    return partner


def set_dpop_required(session: Session, partner_name: str, required: bool) -> Partner:
    """When required, the partner's clients get access tokens only bound to a DPoP key (a token request
    without a proof is refused), its bearer tokens already issued are refused, and so are its API keys
    (bearer credentials too, and for ever), whatever `set_tokens_required` says."""
    partner = find_partner(session, partner_name)
    partner.dpop_required = required
    return partner


def rotate_signing_key(session: Session, settings: Settings) -> str:
    """A new signing key signs from now on; the older ones still verify until retired. It is sealed
    with the servers' secret (api/identity/key_seal.py), which the command must then have too."""
    if not settings.secret_key:
        raise OperatorError(
            "PARTNER_API_SECRET_KEY is unset: the new key is sealed with the servers' secret; set theirs (the "
            "demo's is in `demo-secret-key`)"
        )
    return add_signing_key(session, KeySeal(settings.secret_key.encode()), utcnow())


def retire_signing_key(session: Session, kid: str) -> None:
    """Tokens it signed are refused from their next request, in every worker. The last
    live key cannot be retired: rotate first."""
    key = session.get(OAuthSigningKey, kid)
    if key is None or key.retired_at is not None:
        raise OperatorError(f"no live signing key {kid!r}")
    live = session.scalars(select(OAuthSigningKey.kid).where(OAuthSigningKey.retired_at.is_(None))).all()
    if len(live) <= 1:
        raise OperatorError("this is the only live signing key: rotate first")
    key.retired_at = utcnow()
