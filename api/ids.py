"""Opaque public identifiers.

Every object the API exposes is named by `<kind>_<26 random base32 chars>` (130 bits): the kind
lets `node(id)` find the table, and the random part can be neither guessed nor walked.
Internal integer keys never leave the database.
"""

import base64
import secrets

KIND_PREFIXES = {
    "Practice": "prc",
    "Practitioner": "prt",
    "Patient": "pat",
    "Appointment": "apt",
    "Grant": "grt",
    "Partner": "ptn",
}
PREFIX_KINDS = {prefix: kind for kind, prefix in KIND_PREFIXES.items()}
RANDOM_LENGTH = 26


def new_public_id(kind: str) -> str:
    random_part = base64.b32encode(secrets.token_bytes(16)).decode().rstrip("=").lower()
    return f"{KIND_PREFIXES[kind]}_{random_part}"


def kind_of(public_id: str) -> str | None:
    """The GraphQL type a well-formed public id names, or None for anything else."""
    prefix, sep, random_part = public_id.partition("_")
    if not sep or len(random_part) != RANDOM_LENGTH:
        return None
    if not all(c in "abcdefghijklmnopqrstuvwxyz234567" for c in random_part):
        return None
    return PREFIX_KINDS.get(prefix)
