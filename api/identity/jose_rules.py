"""What the server accepts of a JWT it did not sign: the algorithms and the clock's leeway.

Algorithms are an allow-list of asymmetric ones: never `none`, never an HMAC (a public key used as
an HMAC secret would let anyone who read it sign). SMART Backend Services names RS384 and ES384 for
client assertions; DPoP proofs also take the common ES256 and RS256.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jws import JWSRegistry

__all__ = [
    "ASSERTION_ALGORITHMS", "LEEWAY_SECONDS", "MIN_RSA_BITS", "PROOF_ALGORITHMS", "PROOF_REGISTRY", "TOKEN_ALGORITHM",
    "unverified_parts",
]  # fmt: skip

ASSERTION_ALGORITHMS = ("RS384", "ES384")
PROOF_ALGORITHMS = ("ES256", "ES384", "RS256", "RS384")
TOKEN_ALGORITHM = "ES384"  # the server's own access tokens
LEEWAY_SECONDS = 5  # clock skew tolerated between a client and the server
MAX_JWT_BYTES = 8192  # larger than any honest assertion, proof or token
MIN_RSA_BITS = 2048  # a client's RSA keys, for assertions and proofs alike
# A DPoP proof's header carries the client's public key: an RSA `jwk` of 2048 bits makes a header
# of about 500 bytes (4096: 850), beyond joserfc's default of 512, which refused RSA proofs.
MAX_HEADER_BYTES = 2048


def _registry(algorithms: tuple[str, ...] | None) -> JWSRegistry:
    registry = JWSRegistry(algorithms=algorithms)
    registry.max_header_length = MAX_HEADER_BYTES
    return registry


PROOF_REGISTRY = _registry(PROOF_ALGORITHMS)
_EXTRACTING = _registry(None)  # reads a header and claims, verifies nothing
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


def _canonical(segment: str) -> bool:
    """Unpadded base64url whose unused trailing bits are zero. A segment then has one spelling only:
    a changed character never decodes to the same bytes, so a JWT altered in transit (or in a
    mutation test) is never accepted as the original."""
    if not _BASE64URL.fullmatch(segment) or len(segment) % 4 == 1:
        return False
    try:
        decoded = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        return False
    return base64.urlsafe_b64encode(decoded).rstrip(b"=").decode() == segment


def unverified_parts(value: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The header and claims of a compact JWS, not yet verified (to find the key that verifies it);
    None when it is not one."""
    if len(value) > MAX_JWT_BYTES or value.count(".") != 2 or not all(map(_canonical, value.split("."))):
        return None
    try:
        compact = jws.extract_compact(value.encode(), registry=_EXTRACTING)
        claims = json.loads(compact.payload)
    except (JoseError, ValueError, UnicodeDecodeError, RecursionError):
        return None
    header = compact.headers()
    return (dict(header), claims) if isinstance(claims, dict) else None
