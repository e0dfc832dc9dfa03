"""Input scalars as strawberry declares them, narrowed to the values the database can store."""

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


DateTime: ScalarDefinition = dataclasses.replace(DateTimeDefinition, parse_value=_parse_datetime)
SCALAR_OVERRIDES: dict[object, ScalarDefinition] = {datetime: DateTime}
