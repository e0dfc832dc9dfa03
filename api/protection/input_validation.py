"""Refuses a string input outside its `@constraint` before the resolver, so before the database.

A field extension: every field that takes a string, directly or inside an input object, carries
`ValidatedInput()`. It walks the converted arguments along the field's declared types and refuses
the first value outside its rule with BAD_USER_INPUT, naming the argument (`extensions.argument`)
and the field inside it (`extensions.field`, e.g. `newPatient.firstName`). Deny by default: a field
whose string input has no rule fails when the schema is built.

Example:
    @strawberry.field(extensions=[ValidatedInput()])
    def practice(self, id: Annotated[strawberry.ID, strawberry.argument(directives=[ID_RULE])]) -> Practice: ...
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from strawberry.extensions import FieldExtension
from strawberry.schema.name_converter import NameConverter
from strawberry.types.base import StrawberryList, StrawberryOptional, get_object_definition
from strawberry.types.field import StrawberryField
from strawberry.types.info import Info

from api.errors import bad_input
from api.protection.input_rules import Constraint, violation

__all__ = ["ValidatedInput", "check_strings", "string_inputs"]

_STRINGS = (str,)  # strawberry.ID is a NewType of str: the same at run time


def _rule(directives: Any) -> Constraint | None:
    return next((d for d in directives if isinstance(d, Constraint)), None)


def _named(type_: Any) -> Any:
    while isinstance(type_, (StrawberryOptional, StrawberryList)):
        type_ = type_.of_type
    return type_


def _is_string(type_: Any) -> bool:
    named = _named(type_)
    return (isinstance(named, type) and issubclass(named, _STRINGS)) or getattr(named, "__supertype__", None) is str


def string_inputs(field: StrawberryField) -> Iterator[tuple[str, Constraint | None]]:
    """Each string the field takes, as `argument.inner.path`, with its rule (None: missing)."""
    names = NameConverter()
    for argument in field.arguments:
        yield from _strings(names.from_argument(argument), argument.type, _rule(argument.directives), names, set())


def _strings(
    path: str, type_: Any, rule: Constraint | None, names: NameConverter, seen: set[Any]
) -> Iterator[tuple[str, Constraint | None]]:
    named = _named(type_)
    definition = get_object_definition(named)
    if definition is not None and definition.is_input:
        if named in seen:
            return
        for field in definition.fields:
            yield from _strings(
                f"{path}.{names.get_graphql_name(field)}", field.type, _rule(field.directives), names, seen | {named}
            )
    elif _is_string(type_):
        yield path, rule


class ValidatedInput(FieldExtension):
    """Checks the field's string arguments and input fields against their `@constraint`."""

    def apply(self, field: StrawberryField) -> None:
        self._field = field
        missing = [path for path, rule in string_inputs(field) if rule is None]
        if missing:
            raise TypeError(f"{field.python_name}: string inputs without @constraint: {', '.join(missing)}")

    def resolve(self, next_: Callable[..., Any], source: Any, info: Info, **kwargs: Any) -> Any:
        self._check(info, kwargs)
        return next_(source, info, **kwargs)

    async def resolve_async(self, next_: Callable[..., Awaitable[Any]], source: Any, info: Info, **kwargs: Any) -> Any:
        self._check(info, kwargs)
        return await next_(source, info, **kwargs)

    def _check(self, info: Info, kwargs: dict[str, Any]) -> None:
        check_strings(self._field, kwargs, info.schema.config.name_converter)


def check_strings(field: StrawberryField, kwargs: dict[str, Any], names: NameConverter) -> None:
    """The string arguments of `field` (by Python name in `kwargs`) and their input fields against their
    `@constraint`: BAD_USER_INPUT for the first outside it. Also the compiled plans' (api/compiled/page_run.py)."""
    for argument in field.arguments:
        name = names.from_argument(argument)
        _walk(kwargs.get(argument.python_name), argument.type, _rule(argument.directives), name, [], names)


def _walk(
    value: Any, type_: Any, rule: Constraint | None, argument: str, path: list[str | int], names: NameConverter
) -> None:
    if value is None:
        return
    if isinstance(type_, StrawberryOptional):
        _walk(value, type_.of_type, rule, argument, path, names)
    elif isinstance(type_, StrawberryList):
        for index, item in enumerate(value):
            _walk(item, type_.of_type, rule, argument, [*path, index], names)
    elif (definition := get_object_definition(type_)) is not None and definition.is_input:
        if isinstance(value, type_):  # not when strawberry could not convert it: it reports that itself
            for field in definition.fields:
                inner = getattr(value, field.python_name, None)
                _walk(
                    inner, field.type, _rule(field.directives), argument, [*path, names.get_graphql_name(field)], names
                )
    elif isinstance(value, str) and rule is not None and (broken := violation(rule, value)) is not None:
        printed = _printed(argument, path)
        raise bad_input(f"`{printed}` {broken.message}.", argument=argument, field=printed, **broken.limit)


def _printed(argument: str, path: list[str | int]) -> str:
    """`newPatient.firstName` inside an input object, `ids[2]` in a list, else the argument's name."""
    text = argument if not path or isinstance(path[0], int) else ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text
