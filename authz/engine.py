"""Loads the Polar policy and answers the application's two questions, cheaply.

- `filter(partner_id, action, model)`: a SQL `select` of the rows the partner may see; compiled
  once per partner, action and model, since it only depends on the partner id (grants are read
  by the SQL itself, so a revoked grant counts on the very next query).
- `readable_fields(actor, grant, in_horizon=...)`: the "Type.field" names the partner may read of a
  record at the grant's practice, inside the grant's reading horizon or outside it; computed once
  per distinct grant state, never per row.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from oso import Oso
from polar import Variable
from polar.data_filtering import Relation
from polar.exceptions import OsoError, PolarRuntimeError
from polar.ffi import PolarSource
from sqlalchemy import Select

from api.data import models
from api.scopes import Scope
from authz import read_only
from authz.actors import REQUEST_TIME, PartnerActor
from authz.adapter import SqlAlchemyFilterAdapter
from authz.field_rules import FieldRules
from authz.polar_source import PolicySources
from authz.records import GrantedRecord

# Polar stops a query past POLAR_TIMEOUT_MS. Its default, 30 s, is the worker timeout: a rule that
# never ended held the worker's event loop until the arbiter killed it, with the requests it served.
# A decision takes milliseconds (bench/policy.py), asked once per grant state, not per row.
os.environ.setdefault("POLAR_TIMEOUT_MS", "3000")
read_only.install()  # a policy reads fields: no method call, `new` or `_name` reaches Python

POLICY_DIR = Path(__file__).resolve().parent  # the default policy directory (PARTNER_API_POLICY_DIR overrides it)
POLICY_FILES = tuple(sorted(POLICY_DIR.glob("*.polar")))


def _grants_of(my_field: str) -> Relation:
    return Relation(kind="many", other_type="Grant", my_field=my_field, other_field="practice_id")


# What the policy can read of each class. Only these fields exist for row rules.
POLAR_CLASSES: dict[str, tuple[type, dict[str, Any]]] = {
    "Partner": (PartnerActor, {"id": int, "name": str}),
    "Grant": (
        models.Grant,
        {
            "id": int,
            "partner_id": int,
            "practice_id": int,
            **{scope.column: bool for scope in Scope},  # one per row of the scope table
            "granted_at": datetime,
            "expires_at": datetime,
            "revoked_at": datetime,
            "days_back": int,
            "days_ahead": int,
            "history_until": datetime,
        },
    ),
    "Record": (GrantedRecord, {"grant": models.Grant, "in_horizon": bool}),
    "Practice": (models.Practice, {"id": int, "grants": _grants_of("id")}),
    # A practitioner as partners see it: the practitioner at one practice (practice_memberships).
    "Practitioner": (
        models.PracticeMembership,
        {"practice_id": int, "practitioner_id": int, "grants": _grants_of("practice_id")},
    ),
    "Patient": (models.Patient, {"id": int, "practice_id": int, "grants": _grants_of("practice_id")}),
    "Appointment": (
        models.Appointment,
        {
            "id": int,
            "practice_id": int,
            "practitioner_id": int,
            "patient_id": int,
            "status": str,
            "source_partner_id": int,
            "grants": _grants_of("practice_id"),
        },
    ),
    "DeletedAppointment": (
        models.AppointmentTombstone,
        {"id": int, "practice_id": int, "grants": _grants_of("practice_id")},
    ),
}


def new_oso(adapter: SqlAlchemyFilterAdapter | None = None) -> Oso:
    """An Oso knowing the application's classes and their fields, with no policy loaded yet."""
    oso = Oso()
    for name, (cls, fields) in POLAR_CLASSES.items():
        oso.register_class(cls, name=name, fields=fields)
    oso.set_data_filtering_adapter(adapter or SqlAlchemyFilterAdapter())
    return oso


def build_oso(policy_files: tuple[Path, ...] = POLICY_FILES, adapter: SqlAlchemyFilterAdapter | None = None) -> Oso:
    return load_texts(new_oso(adapter), {str(path): path.read_text(encoding="utf-8") for path in policy_files})


class UnsafePolicy(OsoError):
    """The policy says what a policy may not (authz/polar_source.py `unsafe_constructs`): never loaded."""


def load_texts(oso: Oso, texts: Mapping[str, str]) -> Oso:
    """Loads policy texts already read (file name -> text), as `load_files` would load those files:
    what `policy check` read is exactly what is loaded, even if a file changes meanwhile."""
    refused = PolicySources(dict(texts), []).unsafe_constructs()
    if refused:
        said = "; ".join(f"{p.file}:{p.line}: {p.message}" for p in refused)
        raise UnsafePolicy(said)  # type: ignore[no-untyped-call]  # polar's exception classes are unannotated
    # load_files without the reading, and without running inline queries (`?=`), which Polar runs
    # while loading: whatever the screen above saw in the text, none is ever run.
    oso.ffi_polar.load([PolarSource(text, name) for name, text in texts.items()])
    if oso.ffi_polar.next_inline_query() is not None:
        oso.clear_rules()
        raise UnsafePolicy("a policy holds no inline query (`?=`)")  # type: ignore[no-untyped-call]
    return oso


GRANT_FIELDS = tuple(POLAR_CLASSES["Grant"][1])
GRANT_TIMES = tuple(name for name, kind in POLAR_CLASSES["Grant"][1].items() if kind is datetime)
FIELDS_CACHE_SIZE = 16384


class Authorizer:
    def __init__(self, oso: Oso | None = None) -> None:
        self.oso = oso or build_oso()
        self._filter = lru_cache(maxsize=4096)(self._compile_filter)
        self._fields: dict[tuple[Any, ...], frozenset[str]] = {}
        # "Type.field" -> the scopes its rules ask for: what the ledger calls a field's group.
        scopes: dict[str, set[str]] = {}
        try:
            for result in self.oso.query_rule("field_needs_scope", Variable("field"), Variable("scope")):
                scopes.setdefault(result["bindings"]["field"], set()).add(result["bindings"]["scope"])
        except PolarRuntimeError:  # a policy without field rules (e.g. a row-rules file on its own)
            pass
        self.field_scopes = {name: frozenset(needed) for name, needed in scopes.items()}
        # Fields readable only inside a grant's reading horizon, or with its history permission.
        try:
            self.purpose_bound = frozenset(
                r["bindings"]["field"] for r in self.oso.query_rule("purpose_bound", Variable("field"))
            )
        except PolarRuntimeError:
            self.purpose_bound = frozenset()
        # What a document's fields need, checked when a partner registers it (api/documents/).
        self.field_rules = FieldRules(self.oso)

    def filter(self, partner_id: int, action: str, model: type[models.Base]) -> Select[Any]:
        """Rows of `model` the partner may `action`; bind `request_time` when executing."""
        return self._filter(partner_id, action, model)

    def _compile_filter(self, partner_id: int, action: str, model: type[models.Base]) -> Select[Any]:
        actor = PartnerActor(id=partner_id, name="", request_time=REQUEST_TIME)
        query: Select[Any] = self.oso.authorized_query(actor, action, model)  # oso's API is untyped
        return query

    def is_allowed(self, actor: PartnerActor, action: str, resource: object) -> bool:
        return bool(self.oso.is_allowed(actor, action, resource))

    def history_open(self, actor: PartnerActor, grant: models.Grant) -> bool:
        """Whether the grant's permission to read history (outside the reading horizon) is live."""
        return bool(self.oso.query_rule_once("history_open", actor, grant))

    def readable_fields(self, actor: PartnerActor, grant: models.Grant, *, in_horizon: bool) -> frozenset[str]:
        """The "Type.field" names readable through this grant (empty unless it is the actor's live
        grant) of a record inside its reading horizon (`in_horizon`) or outside it.

        The answer is cached under everything it can depend on: the actor, every grant field
        the policy can see, where the request time stands against each of the grant's dates,
        and the record's side of the horizon. Changing a grant changes the key, so the cache
        never outlives a change.
        """
        assert isinstance(actor.request_time, datetime)
        key = (
            actor.id,
            actor.name,
            tuple(getattr(grant, name) for name in GRANT_FIELDS),
            tuple(_order(getattr(grant, name), actor.request_time) for name in GRANT_TIMES),
            in_horizon,
        )
        fields = self._fields.get(key)
        if fields is None:
            if len(self._fields) >= FIELDS_CACHE_SIZE:
                self._fields.clear()
            record = GrantedRecord(grant, in_horizon)
            fields = self._fields[key] = frozenset(self.oso.authorized_fields(actor, "read", record))
        return fields


def _order(value: datetime | None, now: datetime) -> int | None:
    return None if value is None else (value > now) - (value < now)
