"""Proof of possession (DPoP, RFC 9449): a JWT the client signs with its own key for each request,
so that a stolen access token is useless without that key.

A proof is checked as RFC 9449 §4.3 lists: one compact JWS of `typ` `dpop+jwt`, an allowed
asymmetric algorithm, a public `jwk` in its header that verifies it, the request's method (`htm`)
and URL without query or fragment (`htu`), an `iat` within `MAX_AGE` of now, a `jti` never seen for
that key (api/identity/replay.py), and, with an access token, `ath` = its SHA-256. The key's
thumbprint (RFC 7638, the token's `cnf.jkt`) is the proof's answer.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timedelta

from joserfc import jwt
from joserfc.jwk import RSAKey, import_key
from sqlalchemy.ext.asyncio import AsyncSession

from api.data.database import WriterLock
from api.identity import replay
from api.identity.jose_rules import LEEWAY_SECONDS, MIN_RSA_BITS, PROOF_ALGORITHMS, PROOF_REGISTRY, unverified_parts

__all__ = ["MAX_AGE", "InvalidProof", "access_token_hash", "verify_proof"]

MAX_AGE = timedelta(seconds=60)
MAX_JTI_LENGTH = 255


class InvalidProof(Exception):
    """The proof is missing, malformed, for another request or key, stale, or replayed."""


def access_token_hash(token: str) -> str:
    """`ath`: the base64url SHA-256 of the access token, unpadded."""
    return base64.urlsafe_b64encode(hashlib.sha256(token.encode()).digest()).rstrip(b"=").decode()


def _sound_rsa(key: RSAKey) -> bool:
    """At least MIN_RSA_BITS, and a public exponent of 32 bits at most: a 3072-bit exponent made each
    verification 100 times slower (OpenSSL bounds it only above 3072 bits)."""
    numbers = key.raw_value.public_numbers()  # type: ignore[union-attr]  # a public key: proofs carry no private one
    return key.raw_value.key_size >= MIN_RSA_BITS and numbers.e < 2**32


def _without_query(url: str) -> str:
    return url.split("#", 1)[0].split("?", 1)[0]


async def verify_proof(
    session: AsyncSession,
    proof: str | None,
    method: str,
    url: str,
    now: datetime,
    access_token: str | None = None,
    writer_lock: WriterLock | None = None,
) -> str:
    """The thumbprint of the key that signed a valid proof of this request (`url` without its query);
    raises InvalidProof. Records the proof's `jti` (commits)."""
    parts = unverified_parts(proof) if proof else None
    if proof is None or parts is None:
        raise InvalidProof()
    header, _ = parts
    jwk = header.get("jwk")
    if header.get("typ") != "dpop+jwt" or header.get("alg") not in PROOF_ALGORITHMS or not isinstance(jwk, dict):
        raise InvalidProof()
    try:
        key = import_key(jwk)
        if key.is_private or key.key_type not in ("EC", "RSA"):  # a private key in a header is a leak, not a proof
            raise InvalidProof()
        if isinstance(key, RSAKey) and not _sound_rsa(key):
            raise InvalidProof()
        claims = jwt.decode(proof, key, registry=PROOF_REGISTRY).claims
        thumbprint = key.thumbprint()
    except InvalidProof:
        raise
    except Exception:  # the client's own JWK: joserfc raises more than JoseError on some (KeyError on a bad curve)
        raise InvalidProof() from None
    iat, jti, at = claims.get("iat"), claims.get("jti"), now.timestamp()
    fresh = (
        isinstance(iat, int | float)
        and not isinstance(iat, bool)
        and at - MAX_AGE.total_seconds() <= iat <= at + LEEWAY_SECONDS
    )
    if (
        not fresh
        or claims.get("htm") != method
        or not isinstance(claims.get("htu"), str)
        or _without_query(claims["htu"]) != url
        or not isinstance(jti, str)
        or not 0 < len(jti) <= MAX_JTI_LENGTH
        or (access_token is not None and claims.get("ath") != access_token_hash(access_token))
    ):
        raise InvalidProof()
    kept_until = datetime.fromtimestamp(iat + MAX_AGE.total_seconds() + LEEWAY_SECONDS, now.tzinfo)  # type: ignore[operator]
    if not await replay.first_use(session, "dpop", thumbprint, jti, kept_until, now, writer_lock):
        raise InvalidProof()
    return thumbprint
