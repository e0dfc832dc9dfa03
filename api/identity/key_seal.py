"""The signing keys' private parts, sealed at rest with a key the database does not hold.

Kept in clear, a copy of the database (a backup, a replica, a dump) was enough to sign access tokens
for any OAuth client, of any lifetime, which every worker served as the client's. Sealed (AES-GCM
under a key derived from the server's secret, PARTNER_API_SECRET_KEY, which only the workers'
environment holds), the database alone signs nothing. Each seal names its key (`kid`, as associated
data): a sealed part copied to another row does not open there.

Rotation of the secret, as the cursors': keys are sealed with the first secret and opened with any
(PARTNER_API_SECRET_KEY, then PARTNER_API_SECRET_KEY_PREVIOUS); only a key the first sealed signs
(api/identity/signing_keys.py). A key that opens under none (sealed under a secret since dropped, or
stored in clear before sealing) neither signs nor verifies.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["SEALED_PREFIX", "KeySeal"]

SEALED_PREFIX = "aesgcm:"  # what no JWK's JSON starts with
_NONCE_BYTES = 12


class KeySeal:
    """Seals with `secret`; opens what it or any of `previous` sealed."""

    def __init__(self, secret: bytes, previous: Sequence[bytes] = ()) -> None:
        secrets = [secret, *(key for key in previous if key and key != secret)]
        self._ciphers = [AESGCM(_derive(key)) for key in secrets]

    def seal(self, kid: str, private_jwk: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._ciphers[0].encrypt(nonce, private_jwk.encode(), kid.encode())
        return SEALED_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, kid: str, stored: str) -> tuple[str, bool] | None:
        """The private JWK `seal` made for `kid`, and whether the current secret sealed it (not a
        previous one); None if it was stored otherwise, or under another secret."""
        if not stored.startswith(SEALED_PREFIX):
            return None
        try:
            data = base64.urlsafe_b64decode(stored.removeprefix(SEALED_PREFIX))
        except ValueError:
            return None
        nonce, sealed = data[:_NONCE_BYTES], data[_NONCE_BYTES:]
        for index, cipher in enumerate(self._ciphers):
            try:
                return cipher.decrypt(nonce, sealed, kid.encode()).decode(), index == 0
            except (InvalidTag, ValueError):  # another secret's seal; a nonce cut short
                continue
        return None


def _derive(secret: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"partner-api signing keys").derive(secret)
