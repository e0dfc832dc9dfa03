"""Opaque, sealed, query-bound paging cursors.

A cursor holds the sort key of the last row it stood on (never an internal id) and a digest of
the query it came from, including the partner. It is encrypted and authenticated with a key
derived from the server's secret (AES-SIV: deterministic, no nonce to run out of), so a forged,
tampered or foreign cursor is refused with BAD_USER_INPUT, and a partner reads nothing in it. The
change feed's position is a platform-wide count of writes: readable, it told one partner how much
every other partner's practices were booking between two of its polls.

Rotation: cursors are sealed with the first secret and accepted under any of them
(PARTNER_API_SECRET_KEY, then PARTNER_API_SECRET_KEY_PREVIOUS during its grace period), so that the
cursors partners have stored keep working until they have synced once under the new key. For the same
reason the cursors issued before they were sealed, signed (`body.signature`, with a `.`, which base64url
never holds), are still accepted: remove `_signed` once every partner has synced since (December 2026).
"""

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from api.errors import bad_input

MAX_LENGTH = 1024  # characters; the cursors this codec issues hold about 150


class CursorCodec:
    """Seals cursors with `secret`; also opens those sealed with any of `previous` (a rotation's grace)."""

    def __init__(self, secret: bytes, previous: Sequence[bytes] = ()) -> None:
        self._secret = secret
        self._accepted = [(key, _cipher(key)) for key in [secret, *(key for key in previous if key and key != secret)]]

    def encode(self, binding: Sequence[object], position: Sequence[object]) -> str:
        return self.encoder(binding)(position)

    def encoder(self, binding: Sequence[object]) -> Callable[[Sequence[object]], str]:
        """Encodes positions of one query: its binding's digest taken once for a page's cursors."""
        digest, cipher = _digest(self._secret, binding), self._accepted[0][1]

        def encode(position: Sequence[object]) -> str:
            payload = json.dumps([digest, list(position)], separators=(",", ":"), default=str).encode()
            return _b64(cipher.encrypt(payload, None))

        return encode

    def decode(self, cursor: str, binding: Sequence[object]) -> list[object]:
        """The position in `cursor`, if it was issued by this server for this same query."""
        try:
            secret, payload = self._signed(cursor) if "." in cursor else self._sealed(cursor)
            digest, position = json.loads(payload)
        except (ValueError, TypeError, UnicodeDecodeError):
            raise bad_input("Invalid cursor.") from None
        if digest != _digest(secret, binding) or not isinstance(position, list):
            raise bad_input("This cursor belongs to another query; restart paging without a cursor.")
        return position

    def _sealed(self, cursor: str) -> tuple[bytes, bytes]:
        """The secret that sealed `cursor`, and its payload; ValueError if none did."""
        sealed = _unb64(cursor)
        for key, cipher in self._accepted:
            if (opened := _open(cipher, sealed)) is not None:
                return key, opened
        raise ValueError("not sealed by this server")

    def _signed(self, cursor: str) -> tuple[bytes, bytes]:
        """The same for a cursor signed before cursors were sealed (HMAC-SHA256, 16 bytes)."""
        body, _, signature = cursor.partition(".")
        payload, signed = _unb64(body), _unb64(signature)
        for key, _ in self._accepted:
            if hmac.compare_digest(signed, hmac.new(key, payload, hashlib.sha256).digest()[:16]):
                return key, payload
        raise ValueError("bad signature")


def _cipher(secret: bytes) -> AESSIV:
    key = HKDF(algorithm=hashes.SHA256(), length=64, salt=None, info=b"partner-api cursors").derive(secret)
    return AESSIV(key)


def _open(cipher: AESSIV, sealed: bytes) -> bytes | None:
    try:
        return cipher.decrypt(sealed, None)
    except InvalidTag:
        return None


def _digest(secret: bytes, binding: Sequence[object]) -> str:
    text = json.dumps(list(binding), separators=(",", ":"), default=str).encode()
    return _b64(hmac.new(secret, b"binding:" + text, hashlib.sha256).digest()[:12])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    if not text or len(text) > MAX_LENGTH:
        raise ValueError("bad length")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    # One spelling per cursor: base64 ignores the unused bits of the last character, so without
    # this check some edits of a cursor would decode to the same bytes and pass.
    if _b64(data) != text:
        raise ValueError("not canonical base64")
    return data
