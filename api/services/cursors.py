"""Opaque, signed, query-bound paging cursors.

A cursor holds the sort key of the last row it stood on (never an internal id) and a digest of
the query it came from, including the partner; it is signed with the server's secret, so a
forged, tampered or foreign cursor is refused with BAD_USER_INPUT.
"""

import base64
import hashlib
import hmac
import json
from collections.abc import Sequence

from api.errors import bad_input

SIGNATURE_BYTES = 16
MAX_LENGTH = 1024  # characters; the cursors this codec issues hold about 150


class CursorCodec:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def encode(self, binding: Sequence[object], position: Sequence[object]) -> str:
        payload = json.dumps([self._digest(binding), list(position)], separators=(",", ":"), default=str).encode()
        return _b64(payload) + "." + _b64(self._sign(payload))

    def decode(self, cursor: str, binding: Sequence[object]) -> list[object]:
        """The position in `cursor`, if it was issued by this server for this same query."""
        try:
            body, _, signature = cursor.partition(".")
            payload = _unb64(body)
            if not hmac.compare_digest(_unb64(signature), self._sign(payload)):
                raise ValueError("bad signature")
            digest, position = json.loads(payload)
        except (ValueError, TypeError, UnicodeDecodeError):
            raise bad_input("Invalid cursor.") from None
        if digest != self._digest(binding) or not isinstance(position, list):
            raise bad_input("This cursor belongs to another query; restart paging without `after`.")
        return position

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()[:SIGNATURE_BYTES]

    def _digest(self, binding: Sequence[object]) -> str:
        text = json.dumps(list(binding), separators=(",", ":"), default=str).encode()
        return _b64(hmac.new(self._secret, b"binding:" + text, hashlib.sha256).digest()[:12])


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
