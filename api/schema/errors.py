from api.errors import ErrorCode
from api.schema._described_enum import described_enum

# The error vocabulary, published in the schema for integrators (from api.errors, its one source).
ErrorCodes = described_enum(
    "ErrorCode",
    ErrorCode,
    "The values of `extensions.code` in GraphQL errors. No field returns it: it documents the errors.",
)
