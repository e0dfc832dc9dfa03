import enum
from typing import cast

import strawberry

from api.errors import ErrorCode

# The error vocabulary, published in the schema for integrators (from api.errors, its one source).
# The functional Enum API, whose members mypy types only when they are literals.
_ErrorCodeValues = cast(
    type[enum.Enum],
    enum.Enum(
        "ErrorCode", {code.name: strawberry.enum_value(code.value, description=code.description) for code in ErrorCode}
    ),
)
ErrorCodes = strawberry.enum(
    _ErrorCodeValues,
    description="The values of `extensions.code` in GraphQL errors. No field returns it: it documents the errors.",
)
