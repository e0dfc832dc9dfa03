"""Text the database can store: U+0000 and unpaired surrogates are refused where a client's text
enters, not met as an encoding error at the database (PostgreSQL text cannot hold the first, UTF-8
cannot encode the second, and a driver's error there answers 503 for the client's own mistake)."""

from __future__ import annotations

import re
from typing import Any

__all__ = ["UNSTORABLE", "holds_unstorable_text"]

UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def holds_unstorable_text(value: Any) -> bool:
    """True when a string anywhere in a decoded JSON value (keys included) holds U+0000 or a lone surrogate."""
    pending = [value]
    while pending:  # not recursive: the value may be nested as deep as the JSON parser allows
        item = pending.pop()
        if isinstance(item, str):
            if UNSTORABLE.search(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False
