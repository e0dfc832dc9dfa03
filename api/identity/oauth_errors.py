"""The token endpoint's refusals, as RFC 6749 §5.2 names them.

Each says what kind of thing failed and nothing an attacker could use: every failure of a client's
assertion (unknown client, unknown `kid`, bad signature, a claim out of bounds, a replay) is the one
`invalid_client`, so none can be told from another by probing.
"""

from __future__ import annotations

__all__ = [
    "OAuthError", "invalid_client", "invalid_grant", "invalid_request", "invalid_scope", "quarantined_client",
    "unsupported_grant_type",
]


class OAuthError(Exception):
    """An RFC 6749 error response: `error`, a fixed `error_description`, and its HTTP status."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


def invalid_request(description: str = "The request is missing a parameter or has one twice.") -> OAuthError:
    return OAuthError("invalid_request", description)


def invalid_client() -> OAuthError:
    # 401, as RFC 6749 says for a failed client authentication.
    return OAuthError("invalid_client", "Client authentication failed.", 401)


def quarantined_client() -> OAuthError:
    """The client's credential is quarantined (KEY_QUARANTINED on /graphql): no token until it is released."""
    description = "This client is quarantined after an extraction or change-limit refusal: contact the operator."
    return OAuthError("invalid_client", description, 401)


def invalid_grant() -> OAuthError:
    return OAuthError("invalid_grant", "The client may not be issued a token.")


def invalid_scope() -> OAuthError:
    return OAuthError("invalid_scope", "The requested scope is unknown or exceeds the partner's grants.")


def unsupported_grant_type() -> OAuthError:
    return OAuthError("unsupported_grant_type", "Only grant_type=client_credentials is supported.")
