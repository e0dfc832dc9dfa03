"""GraphQL over HTTP's two response media types, and the status each gives a response.

The specification (graphql.github.io/graphql-over-http, "Accept" and "Status Codes"):

- `application/graphql-response+json`: a *request error* (the document does not parse or
  validate, its variables do not coerce, or it is refused before execution: no `data` entry) is a
  4xx or 5xx; a response with a `data` entry, even null, is 200.
- `application/json`, for the clients that predate it (an Accept header missing, `*/*` or
  `application/*`): every well-formed GraphQL request is answered 200, request errors included.

The project's own refusals keep their status with either type (401 a missing key, 403 a quarantined
key, 408, 413, 415, 429 a spent budget, 503 a database away or a timeout): the specification allows
4xx and 5xx for legacy clients, and those statuses are what HTTP clients, proxies and retry logic
act on (`Retry-After`, `WWW-Authenticate`).
"""

from __future__ import annotations

__all__ = ["GRAPHQL_RESPONSE", "JSON", "MAX_MEDIA_RANGES", "graphql_status", "negotiate"]

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
_ANSWERED = {GRAPHQL_RESPONSE: GRAPHQL_RESPONSE, JSON: JSON, "application/*": JSON, "*/*": JSON}
# Browsers and HTTP clients send a handful; each range costs a parse, and a head may hold thousands.
MAX_MEDIA_RANGES = 32
MAX_RANGE_PARAMETERS = 8  # q and charset are the ones read; a range with more is not read
# Statuses a GraphQL error keeps whatever the media type: they tell the state of the service, not the document.
SERVICE_STATUSES = {429, 503}


def negotiate(accept: str | None) -> str | None:
    """The media type to answer with, or None when the client accepts neither, or lists more than
    MAX_MEDIA_RANGES media ranges (406); a range of more than MAX_RANGE_PARAMETERS parameters is skipped.

    Written by hand: the rule is short, no library of the project's stack parses Accept, and the
    tie-break (the highest q, then the client's first range) is the one graphql-http's own server uses.
    """
    ranges = (accept or "*/*").split(",", MAX_MEDIA_RANGES)
    if len(ranges) > MAX_MEDIA_RANGES:
        return None
    best: tuple[float, int, str] | None = None
    for order, item in enumerate(ranges):
        parts = item.split(";", MAX_RANGE_PARAMETERS + 1)
        if len(parts) > MAX_RANGE_PARAMETERS + 1:
            continue
        media, *parameters = (part.strip().lower() for part in parts)
        options = dict(p.partition("=")[::2] for p in parameters)
        media_type = _ANSWERED.get(media)
        if media_type is None or options.get("charset", "utf-8") != "utf-8":
            continue
        try:
            quality = float(options.get("q", "1"))
        except ValueError:
            continue
        if quality > 0 and (best is None or (quality, -order) > (best[0], -best[1])):
            best = (quality, order, media_type)
    return best[2] if best else None


def graphql_status(media_type: str, request_error: bool, refusal: int) -> int:
    """The status of a GraphQL response that carries errors.

    `request_error`: nothing was executed (no `data` entry); `refusal`: the status the errors' codes
    ask for (api/http/graphql_view.py `refusal_status`: 400, 429, 503, or 200 for a field error).
    """
    if refusal in SERVICE_STATUSES:
        return refusal
    if not request_error:
        return 200  # a `data` entry, even null: the specification's 2xx, for both types
    return max(refusal, 400) if media_type == GRAPHQL_RESPONSE else 200
