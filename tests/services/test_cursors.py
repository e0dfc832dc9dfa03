"""Cursors are sealed (encrypted and authenticated) and bound to their query: any edit, however small,
is refused, and nothing in one can be read."""

import base64
import hashlib
import hmac
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.errors import ApiError
from api.services.cursors import CursorCodec, _unb64

CODEC = CursorCodec(b"test secret")
BINDING = ("appointments", 1, "prc_x")
CURSOR = CODEC.encode(BINDING, ["2026-12-01T08:00:00+00:00", "apt_y"])
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."


def test_a_cursor_decodes_to_its_position_for_its_own_query():
    assert CODEC.decode(CURSOR, BINDING) == ["2026-12-01T08:00:00+00:00", "apt_y"]


@given(index=st.integers(min_value=0, max_value=len(CURSOR) - 1), replacement=st.sampled_from(ALPHABET))
def test_any_one_character_edit_of_a_cursor_is_refused(index, replacement):
    edited = CURSOR[:index] + replacement + CURSOR[index + 1:]
    if edited == CURSOR:
        return
    with pytest.raises(ApiError) as refused:
        CODEC.decode(edited, BINDING)
    assert refused.value.extensions["code"] == "BAD_USER_INPUT"


@given(position=st.lists(st.one_of(st.integers(), st.text(min_size=1, max_size=30)), min_size=1, max_size=3))
def test_nothing_of_the_position_can_be_read_in_a_cursor(position):
    # The change feed's position is a platform-wide count of writes: readable, it told a partner
    # how busy the practices of every other partner were between two of its polls.
    sealed = _unb64(CODEC.encode(BINDING, position))
    for value in position:
        if len(str(value).encode()) >= 4:  # shorter ones turn up in random bytes now and then
            assert str(value).encode() not in sealed


def test_a_cursor_of_another_query_is_refused():
    with pytest.raises(ApiError):
        CODEC.decode(CURSOR, ("appointments", 2, "prc_x"))


@pytest.mark.parametrize("replacement", sorted(set(ALPHABET) - {CURSOR[-1]}))
def test_every_edit_of_the_last_character_is_refused(replacement):
    # base64 ignores the unused low bits of a last character: without a canonical check, a few of
    # these edits decode to the same signature.
    with pytest.raises(ApiError):
        CODEC.decode(CURSOR[:-1] + replacement, BINDING)


def test_after_a_rotation_cursors_of_the_previous_key_are_accepted_and_new_ones_use_the_new_key():
    rotated = CursorCodec(b"new secret", previous=[b"test secret"])
    assert rotated.decode(CURSOR, BINDING) == ["2026-12-01T08:00:00+00:00", "apt_y"]
    issued = rotated.encode(BINDING, ["x"])
    assert CursorCodec(b"new secret").decode(issued, BINDING) == ["x"]  # sealed with the new key only
    with pytest.raises(ApiError):
        CODEC.decode(issued, BINDING)


def test_once_the_previous_key_is_dropped_its_cursors_are_refused():
    with pytest.raises(ApiError) as refused:
        CursorCodec(b"new secret").decode(CURSOR, BINDING)
    assert str(refused.value) == "Invalid cursor."


def test_a_previous_key_still_binds_its_cursors_to_their_query():
    with pytest.raises(ApiError) as refused:
        CursorCodec(b"new secret", previous=[b"test secret"]).decode(CURSOR, ("appointments", 2, "prc_x"))
    assert "another query" in str(refused.value)


def signed_as_before(secret: bytes, binding: tuple[object, ...], position: list[object]) -> str:
    """A cursor as this server issued them before they were sealed: payload and HMAC, each base64url."""
    bound = b"binding:" + json.dumps(list(binding), separators=(",", ":")).encode()
    digest = base64.urlsafe_b64encode(hmac.new(secret, bound, hashlib.sha256).digest()[:12]).decode().rstrip("=")
    payload = json.dumps([digest, position], separators=(",", ":")).encode()
    signature = hmac.new(secret, payload, hashlib.sha256).digest()[:16]
    return ".".join(base64.urlsafe_b64encode(part).decode().rstrip("=") for part in (payload, signature))


def test_a_cursor_signed_before_cursors_were_sealed_is_still_accepted_and_as_strict():
    # Partners' stored sync cursors would all have broken at the upgrade, the secret unchanged.
    legacy = signed_as_before(b"test secret", BINDING, [150440])
    assert CODEC.decode(legacy, BINDING) == [150440]
    assert CursorCodec(b"new secret", previous=[b"test secret"]).decode(legacy, BINDING) == [150440]
    for refused in (legacy[:-1] + ("A" if legacy[-1] != "A" else "B"), legacy.replace(".", ".A", 1)):
        with pytest.raises(ApiError, match="Invalid cursor"):
            CODEC.decode(refused, BINDING)
    with pytest.raises(ApiError, match="another query"):
        CODEC.decode(legacy, ("changes", 2, "prc_x"))
    with pytest.raises(ApiError, match="Invalid cursor"):
        CursorCodec(b"new secret").decode(legacy, BINDING)
