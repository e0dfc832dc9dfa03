"""An object's leaves read from a page's row by Python generated for one shape, one set of readable
fields and one row layout (api/compiled/page_run.py).

Everything that depends on those three is decided once, when the function is generated: which
column each leaf reads, its output coercion, which leaves the grant forbids, the constants of
`__typename`. A row then costs one call: per leaf, a column read, a None check and its coercion,
no loop and no lookup. The function also says which leaves carried a value: it takes the ledger
groups of each (`Projector.carried`, for the side of the reading horizon the record was built on)
and returns their union, as `DisclosedRecord.carried` would have added them one by one.

The functions are kept in one bounded cache for the worker, by what their code depends on (not by
document): an open key sending ever new texts (aliases) makes at most `KEPT` of them live at once.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from graphql import GraphQLID, GraphQLString

from api.compiled.page_plan import Nested, Shape
from api.schema.appointments import AppointmentSource

__all__ = ["Projector", "projector"]

KEPT = 512  # functions, a few kilobytes each

# Row, partner's id, practices whose patients are refused, the ledger groups of each carried leaf
# -> the object's values (its object fields None, for the caller to fill) and the groups carried.
Project = Callable[[Any, int, Container[int], tuple[int, ...]], tuple[dict[str, Any], int]]

# Where each object's fields are read in the row: the columns' names by the object's type.
_PREFIXES = {"Appointment": "", "Patient": "patient__", "Practitioner": "practitioner__", "Practice": "practice__"}

# Coercions that give a str back as it is: a str column needs no call.
_STR_AS_IS = (GraphQLString.coerce_output_value, GraphQLID.coerce_output_value)


@dataclass(frozen=True)
class Projector:
    project: Project
    carried: tuple[str, ...]  # "Type.field" of each leaf that can carry a value, in the order of the groups given
    forbidden: tuple[int, ...]  # the positions in the shape of the leaves the grant forbids: null, each with its error


# What the code generated for one field depends on: its response key, whether it is an object field,
# "Type.field", the attribute it reads, its coercion (None for __typename), and whether it is readable.
_Field = tuple[str, bool, str, str, Callable[[Any], Any] | None, bool]


def projector(shape: Shape, readable: frozenset[str], layout: tuple[str, ...]) -> Projector:
    """The projector of `shape`'s leaves for a partner who may read `readable`, from rows whose
    columns are named `layout`."""
    fields = tuple(
        (f.key, True, f.qualified, "", None, True)
        if isinstance(f, Nested)
        else (f.key, False, f.qualified, f.attribute, f.coerce, f.qualified in readable)
        for f in shape.fields
    )
    return _generated(shape.typename, fields, layout)


@lru_cache(maxsize=KEPT)
def _generated(typename: str, fields: tuple[_Field, ...], layout: tuple[str, ...]) -> Projector:
    columns = {name: index for index, name in enumerate(layout)}
    prefix = _PREFIXES[typename]
    constants: dict[str, Any] = {}
    lines: list[str] = []
    values: list[str] = []
    carried: list[str] = []
    forbidden: list[int] = []
    for index, (key, nested, qualified, attribute, coerce, readable) in enumerate(fields):
        name = f"f{index}"
        values.append(f"{key!r}: {name}")
        if nested:
            lines.append(f"{name} = None")
        elif coerce is None:  # __typename
            constants[name] = typename
        elif not readable:
            lines.append(f"{name} = None")
            forbidden.append(index)
        else:
            lines += _leaf(typename, attribute, coerce, name, len(carried), columns, prefix, constants)
            carried.append(qualified)
    groups = ", ".join(f"g{i}" for i in range(len(carried)))
    body = [f"({groups},) = groups" if carried else "", "carried = 0", *lines]
    source = "def project(row, partner_id, refused, groups):\n"
    source += "".join(f"    {line}\n" for line in body if line)
    source += f"    return {{{', '.join(values)}}}, carried\n"
    namespace = dict(constants)
    # The source holds only names of its own, column positions and the response keys (GraphQL names) as literals.
    exec(compile(source, f"<projector of {typename}>", "exec"), namespace)
    return Projector(namespace["project"], tuple(carried), tuple(forbidden))


def _leaf(
    typename: str,
    attribute: str,
    coerce: Callable[[Any], Any],
    name: str,
    group: int,
    columns: dict[str, int],
    prefix: str,
    constants: dict[str, Any],
) -> list[str]:
    """The lines that set `name` to the leaf's output value, adding its groups when it has one."""
    constants[f"{name}_coerce"] = coerce
    if typename == "Appointment" and attribute == "source":  # who booked it, as seen by this partner
        constants.update({f"{name}_{s.name}": s for s in AppointmentSource})
        creator = columns["source_partner_id"]
        return [
            f"v = row[{creator}]",
            f"v = {name}_PRACTICE if v is None else ({name}_YOU if v == partner_id else {name}_OTHER_PARTNER)",
            f"{name} = {name}_coerce(v)",
            f"carried |= g{group}",
        ]
    if typename == "Appointment" and attribute == "reason":  # health data: none while the patient is refused
        reason, patient, practice = columns["reason"], columns["patient_id"], columns["practice_id"]
        read = f"v = None if row[{patient}] is not None and row[{practice}] in refused else row[{reason}]"
    else:
        read = f"v = row[{columns[prefix + ('public_id' if attribute == 'id' else attribute)]}]"
    coerced = f"v if v.__class__ is str else {name}_coerce(v)" if coerce in _STR_AS_IS else f"{name}_coerce(v)"
    return [
        read,
        "if v is None:",
        f"    {name} = None",
        "else:",
        f"    {name} = {coerced}",
        f"    carried |= g{group}",
    ]
