"""Scalars as strawberry declares them, narrowed: inputs to the values the database can store,
outputs to one form (every instant answered in UTC, whatever offset it was written with)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from strawberry.exceptions import StrawberryInputCoercionError
from strawberry.schema.types.base_scalars import DateTimeDefinition
from strawberry.types.scalar import ScalarDefinition


def _parse_datetime(value: object) -> datetime:
    """strawberry's ISO 8601 parsing, refusing an instant UTC cannot represent (year 1 at +14:00,
    year 9999 at -14:00): it would overflow where it is converted for storage or comparison."""
    parsed: datetime = DateTimeDefinition.parse_value(value)  # type: ignore[misc]  # strawberry's scalar wrapper
    if parsed.tzinfo is not None:
        try:
            parsed.astimezone(UTC)
        except OverflowError:
            raise StrawberryInputCoercionError(
                f'Value cannot represent a DateTime: "{value}". Out of range in UTC.'
            ) from None
    return parsed


def _serialize_datetime(value: datetime) -> str:
    """RFC 3339 in UTC (`+00:00`): a booking's first answer and its replay read the same."""
    if value.tzinfo is None:
        raise ValueError("naive datetime: every instant the API answers is timezone-aware")
    return value.astimezone(UTC).isoformat()


DateTime: ScalarDefinition = dataclasses.replace(
    DateTimeDefinition,
    description="An instant, RFC 3339 (`2026-12-01T08:00:00+01:00`): sent with any offset, answered in UTC.",
    specified_by_url="https://datatracker.ietf.org/doc/html/rfc3339",
    parse_value=_parse_datetime,
    serialize=_serialize_datetime,
)
SCALAR_OVERRIDES: dict[object, ScalarDefinition] = {datetime: DateTime}
