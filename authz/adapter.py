"""Turns oso's data filters into one SQLAlchemy 2 `select`.

oso's stock SqlAlchemyAdapter is unfit (ordering comparisons become `WHERE NULL`, `In`/`Nin`
use Python's `in`, it adds a full-row DISTINCT and holds one sync Session). This adapter:

- handles every operator oso emits (Eq, Neq, Lt, Leq, Gt, Geq, In, Nin) with Polar's
  semantics for nil (`Eq nil` is `IS NULL`, `Neq` is `IS DISTINCT FROM`);
- puts related tables in a correlated `EXISTS`, so rows are never duplicated and no DISTINCT is
  needed, and paging/ordering by the caller stays on the root table's indexes;
- turns `SqlParameter` values into bind parameters, so a filter can be built once per partner
  and executed with fresh values (the request time) on every request;
- refuses anything it cannot translate exactly, rather than guessing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from polar.data.adapter import DataAdapter
from polar.data.filter import Condition, DataFilter, Projection
from polar.data_filtering import Relation as RelationField
from sqlalchemy import ColumnElement, Select, and_, bindparam, exists, false, inspect, or_, select, true
from sqlalchemy.orm import Mapper, Session


class UntranslatableFilter(Exception):
    """The policy produced a condition this adapter cannot turn into exact SQL."""


@dataclass(frozen=True)
class SqlParameter:
    """A value the policy compares against, bound only when the query runs (e.g. `now`)."""

    name: str


class SqlAlchemyFilterAdapter(DataAdapter):
    def __init__(self, session: Session | None = None) -> None:
        # Only offline tools (policy explain) pass a sync session: in the request path oso must
        # never fetch related objects one by one.
        self.session = session

    def build_query(self, filter: DataFilter) -> Select[Any]:
        root = filter.model
        condition = _disjunction(filter.conditions)
        if not filter.relations:
            return select(root).where(condition)
        seen = {root}
        joins = []
        for relation in filter.relations:
            field = filter.types[relation.left].fields[relation.name]
            if not isinstance(field, RelationField):
                raise UntranslatableFilter(f"{relation.left.__name__}.{relation.name} is not a relation")
            if relation.right in seen:
                raise UntranslatableFilter(f"{relation.right.__name__} is reached twice in one rule")
            seen.add(relation.right)
            joins.append(getattr(relation.left, field.my_field) == getattr(relation.right, field.other_field))
        # The root table inside the subquery is auto-correlated to the outer query.
        return select(root).where(exists().where(*joins, condition))

    def execute_query(self, query: Select[Any]) -> list[Any]:
        if self.session is None:
            raise RuntimeError("per-object policy queries are disabled; use authorized queries")
        return list(self.session.scalars(query))


def _disjunction(conjunctions: Iterable[Iterable[Condition]]) -> ColumnElement[bool]:
    terms = [and_(true(), *(_condition(c) for c in conjunction)) for conjunction in conjunctions]
    return or_(false(), *terms)


def _condition(condition: Condition) -> ColumnElement[bool]:
    _check_instances(condition)
    # A side is a column, a bound parameter or a plain Polar value: its comparisons are typed at run time.
    left, right, op = _side(condition.left), _side(condition.right), condition.cmp
    compared: ColumnElement[bool]
    if not isinstance(condition.left, Projection) and isinstance(condition.right, Projection):
        if op in ("In", "Nin"):
            raise UntranslatableFilter(f"`value in column` ({op}) needs rows or a list, not a column")
        left, right, op = right, left, _MIRRORED[op]
    if op == "Eq":
        compared = left.is_(None) if right is None else left == right
        return compared
    if op == "Neq":
        compared = left.is_not(None) if right is None else left.is_distinct_from(right)
        return compared
    if op in ("Lt", "Leq", "Gt", "Geq"):
        if right is None:
            raise UntranslatableFilter(f"{op} against nil has no meaning")
        compared = _ORDERING[op](left, right)
        return compared
    if op in ("In", "Nin"):
        if not isinstance(right, (list, tuple, set, frozenset)):
            raise UntranslatableFilter(f"{op} needs a list on its right, got {type(right).__name__}")
        values = [v for v in right if v is not None]
        contains_nil = len(values) != len(right)
        inside = or_(left.in_(values) if values else false(), left.is_(None) if contains_nil else false())
        if op == "In":
            return inside
        # Polar: `not nil in [1, 2]` holds, while SQL's `NULL NOT IN (...)` is unknown.
        outside = left.not_in(values) if values else true()
        return and_(left.is_not(None), outside) if contains_nil else or_(left.is_(None), outside)
    raise UntranslatableFilter(f"unknown comparison {op!r}")


_MIRRORED = {"Eq": "Eq", "Neq": "Neq", "Lt": "Gt", "Leq": "Geq", "Gt": "Lt", "Geq": "Leq"}
_ORDERING = {
    "Lt": lambda a, b: a < b,
    "Leq": lambda a, b: a <= b,
    "Gt": lambda a, b: a > b,
    "Geq": lambda a, b: a >= b,
}


def _side(side: Any) -> Any:
    if isinstance(side, Projection):
        name = side.field or _primary_key(side.source)
        return getattr(side.source, name)
    if isinstance(side, SqlParameter):
        return bindparam(side.name)
    if _is_mapped(side):
        return getattr(side, _primary_key(type(side)))
    return side


def _is_mapped(value: Any) -> bool:
    mapper = inspect(type(value), raiseerr=False)
    return mapper is not None and getattr(mapper, "is_mapper", False)


def _primary_key(model: type) -> str:
    # A record stands for its primary key; with several columns, one of them would match
    # every record sharing it (e.g. every practitioner of a practice).
    mapper: Mapper[Any] = inspect(model)
    columns = mapper.primary_key
    if len(columns) != 1:
        raise UntranslatableFilter(f"{model.__name__} has a composite primary key: compare its fields instead")
    key = columns[0].key
    if key is None:  # a primary key is a named column
        raise UntranslatableFilter(f"{model.__name__}'s primary key has no name")
    return key


def _check_instances(condition: Condition) -> None:
    # In Polar a record equals only itself: comparing it with a column such as `practice_id`
    # is false in memory, so SQL must not turn it into `practice_id = <its id>`.
    for mine, other in ((condition.left, condition.right), (condition.right, condition.left)):
        if _is_mapped(mine) and not (
            isinstance(other, Projection) and other.field is None and other.source is type(mine)
        ):
            raise UntranslatableFilter(
                f"a {type(mine).__name__} record compared with something other than a {type(mine).__name__}: "
                "compare its id field instead"
            )
