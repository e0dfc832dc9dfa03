"""Opaque, signed, query-bound paging cursors.

A cursor holds the sort key of the last row it stood on (never an internal id) and a digest of
the query it came from, including the partner; it is signed with the server's secret, so a
forged, tampered or foreign cursor is refused with BAD_USER_INPUT.

Rotation: cursors are signed with the first secret and accepted under any of them
(PARTNER_API_SECRET_KEY, then PARTNER_API_SECRET_KEY_PREVIOUS during its grace period), so that the
cursors partners have stored keep working until they have synced once under the new key.
"""

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Sequence

from api.errors import bad_input

SIGNATURE_BYTES = 16
MAX_LENGTH = 1024  # characters; the cursors this codec issues hold about 150


class CursorCodec:
    """Signs cursors with `secret`; also accepts those signed with any of `previous` (a rotation's grace)."""

    def __init__(self, secret: bytes, previous: Sequence[bytes] = ()) -> None:
        self._secret = secret
        self._accepted = [secret, *(key for key in previous if key and key != secret)]

    def encode(self, binding: Sequence[object], position: Sequence[object]) -> str:
        return self.signer(binding)(position)

    def signer(self, binding: Sequence[object]) -> Callable[[Sequence[object]], str]:
        """Encodes positions of one query: its binding's digest taken once for a page's cursors."""
        digest, secret = _digest(self._secret, binding), self._secret

        def encode(position: Sequence[object]) -> str:
            payload = json.dumps([digest, list(position)], separators=(",", ":"), default=str).encode()
            return _b64(payload) + "." + _b64(_sign(secret, payload))

        return encode

    def decode(self, cursor: str, binding: Sequence[object]) -> list[object]:
        """The position in `cursor`, if it was issued by this server for this same query."""
        try:
            body, _, signature = cursor.partition(".")
            payload, signed = _unb64(body), _unb64(signature)
            secret = next((key for key in self._accepted if hmac.compare_digest(signed, _sign(key, payload))), None)
            if secret is None:
                raise ValueError("bad signature")
            digest, position = json.loads(payload)
        except (ValueError, TypeError, UnicodeDecodeError):
            raise bad_input("Invalid cursor.") from None
        if digest != _digest(secret, binding) or not isinstance(position, list):
            raise bad_input("This cursor belongs to another query; restart paging without `after`.")
        return position


def _sign(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, payload, hashlib.sha256).digest()[:SIGNATURE_BYTES]


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
