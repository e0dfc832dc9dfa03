import enum

import strawberry

from api.errors import ErrorCode

# The error vocabulary, published in the schema for integrators (from api.errors, its one source).
ErrorCodes = strawberry.enum(
    enum.Enum(  # type: ignore[misc]
        "ErrorCode", {code.name: strawberry.enum_value(code.value, description=code.description) for code in ErrorCode}
    ),
    description="The values of `extensions.code` in GraphQL errors. No field returns it: it documents the errors.",
)
