"""An object's leaves read from a page's row by Python generated for one shape, one set of readable
fields and one row layout (api/compiled/page_run.py).

Everything that depends on those three is decided once, when the function is generated: which
column each leaf reads, its output coercion, which leaves the grant forbids, the constants of
`__typename`. A row then costs one call: per leaf, a column read, a None check and its coercion,
no loop and no lookup. The function also says which leaves carried a value: it takes the ledger
groups of each (`Projector.carried`, for the side of the reading horizon the record was built on)
and returns their union, as `DisclosedRecord.carried` would have added them one by one.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import GraphQLID, GraphQLString

from api.compiled.page_plan import Leaf, Nested, Shape
from api.schema.appointments import AppointmentSource

__all__ = ["Projector", "projector"]

# Row, partner's id, practices whose patients are refused, the ledger groups of each carried leaf
# -> the object's values (its object fields None, for the caller to fill) and the groups carried.
Project = Callable[[Any, int, Container[int], tuple[int, ...]], tuple[dict[str, Any], int]]

# Coercions that give a str back as it is: a str column needs no call.
_STR_AS_IS = (GraphQLString.coerce_output_value, GraphQLID.coerce_output_value)


@dataclass(frozen=True)
class Projector:
    project: Project
    carried: tuple[str, ...]  # "Type.field" of each leaf that can carry a value, in the order of the groups given
    forbidden: tuple[Leaf, ...]  # the leaves the grant forbids: null, each with its error


def projector(shape: Shape, readable: frozenset[str], columns: Mapping[str, int], prefix: str) -> Projector:
    """The projector of `shape`'s leaves for a partner who may read `readable`, from rows whose
    columns are `columns` (by name; the object's own prefixed with `prefix`)."""
    constants: dict[str, Any] = {}
    lines: list[str] = []
    values: list[str] = []
    carried: list[str] = []
    forbidden: list[Leaf] = []
    for index, field in enumerate(shape.fields):
        name = f"f{index}"
        values.append(f"{field.key!r}: {name}")
        if isinstance(field, Nested):
            lines.append(f"{name} = None")
        elif field.is_typename:
            constants[name] = field.typename
        elif field.qualified not in readable:
            lines.append(f"{name} = None")
            forbidden.append(field)
        else:
            lines += _leaf(shape.typename, field, name, len(carried), columns, prefix, constants)
            carried.append(field.qualified)
    groups = ", ".join(f"g{i}" for i in range(len(carried)))
    body = [f"({groups},) = groups" if carried else "", "carried = 0", *lines]
    source = "def project(row, partner_id, refused, groups):\n"
    source += "".join(f"    {line}\n" for line in body if line)
    source += f"    return {{{', '.join(values)}}}, carried\n"
    namespace = dict(constants)
    # The source holds only names of its own, column indexes and the response keys (GraphQL names) as literals.
    exec(compile(source, f"<projector of {shape.typename}>", "exec"), namespace)
    return Projector(namespace["project"], tuple(carried), tuple(forbidden))


def _leaf(
    typename: str, leaf: Leaf, name: str, group: int, columns: Mapping[str, int], prefix: str, constants: dict[str, Any]
) -> list[str]:
    """The lines that set `name` to the leaf's output value, adding its groups when it has one."""
    constants[f"{name}_coerce"] = leaf.coerce
    if typename == "Appointment" and leaf.attribute == "source":  # who booked it, as seen by this partner
        constants.update({f"{name}_{s.name}": s for s in AppointmentSource})
        creator = columns["source_partner_id"]
        return [
            f"v = row[{creator}]",
            f"v = {name}_PRACTICE if v is None else ({name}_YOU if v == partner_id else {name}_OTHER_PARTNER)",
            f"{name} = {name}_coerce(v)",
            f"carried |= g{group}",
        ]
    if typename == "Appointment" and leaf.attribute == "reason":  # health data: none while the patient is refused
        reason, patient, practice = columns["reason"], columns["patient_id"], columns["practice_id"]
        read = f"v = None if row[{patient}] is not None and row[{practice}] in refused else row[{reason}]"
    else:
        read = f"v = row[{columns[prefix + ('public_id' if leaf.attribute == 'id' else leaf.attribute)]}]"
    coerced = f"v if v.__class__ is str else {name}_coerce(v)" if leaf.coerce in _STR_AS_IS else f"{name}_coerce(v)"
    return [
        read,
        "if v is None:",
        f"    {name} = None",
        "else:",
        f"    {name} = {coerced}",
        f"    carried |= g{group}",
    ]
