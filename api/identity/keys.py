"""Partner API keys: `pak_<prefix>_<secret>`.

The prefix is public and finds the key row; only the SHA-256 of the secret is stored. The
secret has 256 bits of entropy, so a fast hash is enough (no password-style stretching), and
the comparison is constant-time.
"""

import hashlib
import hmac
import secrets
from dataclasses import dataclass

KEY_MARK = "pak"
PREFIX_LENGTH = 12
SECRET_LENGTH = 43  # token_urlsafe(32)


@dataclass(frozen=True)
class IssuedKey:
    prefix: str
    secret_hash: str
    token: str  # shown once to the operator, never stored


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_key() -> IssuedKey:
    prefix = secrets.token_hex(PREFIX_LENGTH // 2)
    secret = secrets.token_urlsafe(32)
    return IssuedKey(prefix=prefix, secret_hash=hash_secret(secret), token=f"{KEY_MARK}_{prefix}_{secret}")


def split_token(token: str) -> tuple[str, str] | None:
    """(prefix, secret) of a well-formed token, else None."""
    mark, _, rest = token.partition("_")
    prefix, _, secret = rest.partition("_")
    if mark != KEY_MARK or len(prefix) != PREFIX_LENGTH or len(secret) != SECRET_LENGTH:
        return None
    return prefix, secret


def secret_matches(secret: str, secret_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), secret_hash)
