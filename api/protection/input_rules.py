"""The length and characters of every string the API takes in, declared in the schema with `@constraint`.

A string argument or input field either lands in a database column, whose size is its limit
(PostgreSQL refuses a longer value mid-write, SQLite stores it), or is a token the API issued
(a cursor) with a limit of its own. Its rule is declared once, on the argument or input field,
from the column (`from_column`), so the schema shows partners what is accepted and the check
(`api.protection.input_validation`) can never drift from the database.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

import strawberry
from email_validator import EmailNotValidError, validate_email
from sqlalchemy.orm import InstrumentedAttribute
from strawberry.schema_directive import Location

__all__ = ["Constraint", "TextFormat", "Violation", "from_column", "violation"]


@strawberry.enum(description="What characters a constrained string may hold.")
class TextFormat(enum.Enum):
    TEXT = strawberry.enum_value(
        "text", description="Free text: line breaks and tabs allowed, no other control character."
    )
    LINE = strawberry.enum_value(
        "line", description="One line with at least one visible character; no control character."
    )
    TOKEN = strawberry.enum_value(
        "token", description="An id or token as the API issues them: printable ASCII, no space."
    )
    EMAIL = strawberry.enum_value(
        "email", description="An e-mail address (RFC 5322 address, internationalized allowed)."
    )
    PHONE = strawberry.enum_value(
        "phone",
        description="A phone number: an optional leading +, then 3 to 15 digits (E.164), spaces, dots, hyphens, "
        "parentheses.",
    )


@strawberry.schema_directive(
    locations=[Location.ARGUMENT_DEFINITION, Location.INPUT_FIELD_DEFINITION],
    name="constraint",
    description="The lengths (in Unicode characters) and format a string input accepts; "
    "any other value is refused with BAD_USER_INPUT naming the field (`extensions.field`).",
)
class Constraint:
    max_length: int = strawberry.directive_field(name="maxLength")
    min_length: int = strawberry.directive_field(name="minLength", default=0)
    format: TextFormat = strawberry.directive_field(name="format", default=TextFormat.LINE)


def from_column(
    column: InstrumentedAttribute[str] | InstrumentedAttribute[str | None], format: TextFormat, min_length: int = 0
) -> Constraint:
    """The rule of an input stored in `column`: at most the column's size."""
    length = getattr(column.type, "length", None)
    if not length:
        raise TypeError(f"{column} has no size: an input stored there needs a bounded column")
    return Constraint(max_length=length, min_length=min_length, format=format)


@dataclass(frozen=True)
class Violation:
    """Why a value breaks its rule, in words, with the limit it passed (for `extensions`) if any."""

    message: str
    limit: dict[str, object]


# Control characters (Unicode Cc is exactly C0, DEL and C1), line and paragraph separators;
# free text keeps tab and line breaks.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_BUT_LINE_BREAKS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")
# By hand: what a patient gives as their number, foreign ones included, in any usual notation;
# libphonenumber's per-country rules would refuse numbers the practice itself takes down.
_PHONE = re.compile(r"\+?[0-9 ().\-]+")
_TOKEN = re.compile(r"[\x21-\x7e]*")


def violation(rule: Constraint, value: str) -> Violation | None:
    """None when `value` keeps to `rule`."""
    if len(value) > rule.max_length:
        return Violation(
            f"holds at most {rule.max_length} characters", {"limit": "maxLength", "maximum": rule.max_length}
        )
    if len(value) < rule.min_length:
        return Violation(
            f"holds at least {rule.min_length} character(s)", {"limit": "minLength", "minimum": rule.min_length}
        )
    if (_CONTROL_BUT_LINE_BREAKS if rule.format is TextFormat.TEXT else _CONTROL).search(value):
        return Violation(
            "may not contain control characters or line breaks", {"limit": "format", "format": rule.format.value}
        )
    problem = _format_problem(rule.format, value)
    return Violation(problem, {"limit": "format", "format": rule.format.value}) if problem else None


def _format_problem(format: TextFormat, value: str) -> str | None:
    if format is TextFormat.LINE and value and not value.strip():
        return "needs at least one visible character"
    if format is TextFormat.TOKEN and not _TOKEN.fullmatch(value):
        return "holds printable ASCII characters only, without spaces"
    if format is TextFormat.PHONE:
        digits = sum(c.isdigit() for c in value)
        if not _PHONE.fullmatch(value) or not 3 <= digits <= 15:
            return (
                "is not a phone number: an optional leading +, then 3 to 15 digits, spaces, dots, hyphens"
                " or parentheses"
            )
    if format is TextFormat.EMAIL:
        try:
            validate_email(value, check_deliverability=False)  # syntax only: no DNS lookup on the request path
        except EmailNotValidError as error:
            return f"is not an e-mail address: {error}"
    return None
