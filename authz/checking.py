"""`partner-api policy check`: every mistake a policy author can make, found before a request is.

The policy is loaded exactly as the application loads it (the classes of `authz.engine`), and
then exercised: every permission of every resource block is compiled to SQL, and the field
rules are run on a grant holding every scope. Its text is read for what Polar accepts but the
application never matches: a field no class has, a scope not in `api/scopes.py`, a "Type.field"
not in the GraphQL schema. Each problem names its file and line.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TypeVar

from oso import Oso
from polar import Variable
from polar.exceptions import OsoError
from polar.ffi import process_messages
from sqlalchemy.dialects import sqlite

from api.data.models import Grant
from api.scopes import Scope
from authz.actors import REQUEST_TIME, PartnerActor
from authz.adapter import UntranslatableFilter
from authz.engine import POLAR_CLASSES, POLICY_FILES, load_texts, new_oso
from authz.polar_source import LOCATION, PolicySources, Problem, Severity
from authz.records import GrantedRecord

#: What a scope looks like in a rule ("appointments:read"): any such string must be a known scope.
SCOPE_SHAPED = re.compile(r"[a-z_]+:[a-z_]+")
#: Rules whose first argument names a "Type.field" of the GraphQL schema, and those naming a type.
FIELD_FACTS = ("field_with_any_grant", "field_needs_scope", "purpose_bound")
TYPE_FACTS = ("structural_type", "own_account_type")
#: Oso's wording for a method call in a row rule, and its advice to register a field (meant for its own users).
_METHOD_CALL = re.compile(r"Not supported: cannot call method on unbound variable \S+")
_REGISTER_ADVICE = re.compile(r"Unregistered field or relation: (\w+)\.(\w+).*", re.DOTALL)

T = TypeVar("T")


@dataclass(frozen=True)
class CheckReport:
    files: tuple[Path, ...]
    rules: int
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)

    @property
    def summary(self) -> str:
        if self.ok:
            return f"policy OK: {self.rules} rules in {len(self.files)} file{'s' if len(self.files) != 1 else ''}"
        errors = sum(p.severity == "error" for p in self.problems)
        return f"policy has {errors} error{'s' if errors > 1 else ''}"


def check_policy(files: Sequence[Path] = POLICY_FILES) -> CheckReport:
    """Load the policy files, then compile every row permission and run the field rules once."""
    files = tuple(Path(f) for f in files)
    return check_sources(files, PolicySources.read(files))


def check_sources(files: tuple[Path, ...], sources: PolicySources) -> CheckReport:
    """`check_policy` on texts already read: a policy is loaded from the very texts checked."""
    if sources.problems:
        return CheckReport(files, 0, tuple(sources.problems))
    oso, problems = load(sources)
    if oso is not None and not any(p.severity == "error" for p in problems):
        # A field or scope no record has is found in the text, where it is written: running the
        # rules would only report its consequences, at the block or the call that met it.
        problems += _unknown_attributes(sources) + _unknown_scopes(sources)
        if not any(p.severity == "error" for p in problems):
            problems += _compile_row_permissions(oso, sources)
            problems += _run_field_rules(oso, sources)
            problems += _fields_not_in_schema(oso, sources)
    return CheckReport(files, sources.rule_count(), tuple(problems))


def load(sources: PolicySources) -> tuple[Oso | None, list[Problem]]:
    """An Oso with the application's classes and these texts, and what loading them reported."""
    refused = sources.unsafe_constructs()  # each at its line; Polar never sees them (engine.load_texts)
    if refused:
        return None, refused
    loaded = new_oso()
    oso: Oso | None = loaded
    ffi = loaded.ffi_polar
    # Polar prints its warnings to stdout; collect them instead.
    messages: list[str] = []
    ffi.process_messages = lambda: messages.extend(process_messages(ffi.next_message))  # type: ignore[method-assign]  # polar's hook, replaced on purpose
    problems: list[Problem] = []
    try:
        load_texts(loaded, sources.texts)
    except OsoError as error:
        problems.append(sources.problem("error", str(error)))
        oso = None
    for message in messages:
        text = message.removeprefix("[warning] ").removeprefix("Warning: ")
        if not LOCATION.search(text):
            # Polar's general advice runs over paragraphs: its first one says it all.
            text = " ".join(text.split("\n\n")[0].split())
        # An unknown specializer makes its rule silently never match: an error for us.
        severity: Severity = "error" if text.startswith("Unknown specializer") else "warning"
        problems.append(sources.problem(severity, text))
    return oso, problems


def _compile_row_permissions(oso: Oso, sources: PolicySources) -> list[Problem]:
    problems = []
    actor = PartnerActor(id=0, name="", request_time=REQUEST_TIME)
    for block in sources.resource_blocks():
        if block.name not in POLAR_CLASSES:
            continue  # reported by Polar as an unregistered class
        model = POLAR_CLASSES[block.name][0]
        for permission in block.permissions:
            what = f"{permission!r} on {block.name}"
            try:
                statement = oso.authorized_query(actor, permission, model)
            except (OsoError, UntranslatableFilter, AttributeError) as error:
                message = f"{what} cannot be compiled to SQL: {in_policy_terms(str(error))}"
                problems.append(sources.problem("error", message, block.location))
                continue
            where = statement.whereclause
            if where is None or str(where.compile(dialect=sqlite.dialect())) in ("0 = 1", "false"):
                rules = sources.permission_rules(block.name, permission)
                problems.append(
                    sources.problem(
                        "error",
                        f"nothing allows {what}: its SQL filter is always false. Either no has_permission "
                        "rule gives it, or its rules ask for something no record has (an unknown scope, "
                        "a field no class has), or a helper rule types its argument (write "
                        "`has_scope(grant, ...)`, not `has_scope(grant: Grant, ...)`): oso cannot type a "
                        "partial record.",
                        rules[0] if rules else block.location,
                    )
                )
    return problems


def in_policy_terms(message: str) -> str:
    """Oso's messages about method calls and unregistered fields, said as a policy author can act on them."""
    message = _METHOD_CALL.sub(
        "a method call: row rules become SQL, which can only compare fields of the records (see "
        "docs/policy-guide.md, What the policy can read), so compare a field instead",
        message,
    )
    unregistered = _REGISTER_ADVICE.search(message)
    if unregistered:
        kind, name = unregistered[1], unregistered[2]
        fields = ", ".join(POLAR_CLASSES[kind][1]) if kind in POLAR_CLASSES else "none"
        message = message[: unregistered.start()] + f"{kind} has no field {name!r} the policy can read ({fields})"
    return message


def _unknown_attributes(sources: PolicySources) -> list[Problem]:
    """`record.x` where no class the policy reads has a field x: oso would let a row rule compile to
    `false`, and a field rule fail on the first request."""
    known = {name for _, fields in POLAR_CLASSES.values() for name in fields} | {"request_time"}
    problems = []
    for token, called in sources.attributes():
        if called:
            continue  # a method call: compiling the row rules says where it cannot go
        if token.text not in known:
            near = difflib.get_close_matches(token.text, sorted(known), n=3)
            hint = f"; did you mean {' or '.join(near)}?" if near else ""
            problems.append(
                sources.problem(
                    "error",
                    f"no class the policy can read has a field {token.text!r}{hint} "
                    "(docs/policy-guide.md, What the policy can read)",
                    (token.file, token.line),
                )
            )
    return problems


def _unknown_scopes(sources: PolicySources) -> list[Problem]:
    """A scope-shaped string that is no scope of api/scopes.py, where it is written."""
    known = {scope.value for scope in Scope}
    return [
        sources.problem(
            "error",
            f"unknown scope {token.text.strip(chr(34))!r} (known: {', '.join(sorted(known))})",
            (token.file, token.line),
        )
        for token in sources.strings()
        if SCOPE_SHAPED.fullmatch(token.text.strip('"')) and token.text.strip('"') not in known
    ]


def _fields_not_in_schema(oso: Oso, sources: PolicySources) -> list[Problem]:
    """A field rule about a "Type.field" the schema does not have protects nothing: a misspelt
    `Patient.phon` would leave `Patient.phone` never readable, silently."""
    from graphql import GraphQLObjectType

    from api.schema import schema

    types = {
        name: set(t.fields)
        for name, t in schema._schema.type_map.items()
        if isinstance(t, GraphQLObjectType) and not name.startswith("__")
    }
    existing = sorted(f"{t}.{f}" for t, fields in types.items() for f in fields)
    problems = []
    for rule in FIELD_FACTS + TYPE_FACTS:
        for name in sorted(_first_arguments(oso, rule)):
            if name in (types if rule in TYPE_FACTS else existing):
                continue
            near = difflib.get_close_matches(name, sorted(types) if rule in TYPE_FACTS else existing, n=3)
            hint = f"; did you mean {' or '.join(near)}?" if near else ""
            what = "type" if rule in TYPE_FACTS else "field"
            problems.append(
                sources.problem(
                    "error", f"{rule}: the GraphQL schema has no {what} {name!r}{hint}", sources.find(f'"{name}"')
                )
            )
    return problems


def _first_arguments(oso: Oso, rule: str) -> set[str]:
    arity = 2 if rule == "field_needs_scope" else 1
    try:
        results = oso.query_rule(rule, *(Variable(f"x{i}") for i in range(arity)), accept_expression=False)
        return {r["bindings"]["x0"] for r in results if isinstance(r["bindings"]["x0"], str)}
    except OsoError:  # no such rule in this policy
        return set()


def _run_field_rules(oso: Oso, sources: PolicySources) -> list[Problem]:
    now = datetime.now(UTC)
    grant = Grant(id=1, partner_id=1, practice_id=1, granted_at=now, expires_at=now + timedelta(days=1))
    grant.set_scopes(set(Scope))
    actor = PartnerActor(id=1, name="", request_time=now)
    problems: list[Problem] = []

    def ask(what: str, question: Callable[[], T], default: T) -> T:
        try:
            return question()
        except OsoError as error:
            if "Query for undefined rule" not in str(error):  # a file checked without the others
                problems.append(sources.problem("error", f"{what}: {in_policy_terms(str(error))}"))
            return default

    ask("the field rules fail on a live grant", lambda: oso.authorized_fields(actor, "read", grant), set())
    # And on a record each side of the reading horizon, as every page asks them: a rule that fails or
    # never ends only there passed the check, then failed every page holding such a record.
    for in_horizon in (True, False):
        record = GrantedRecord(grant, in_horizon)
        ask(
            f"the field rules fail on a record {'inside' if in_horizon else 'outside'} the reading horizon",
            partial(oso.authorized_fields, actor, "read", record),
            set(),
        )
    known = {scope.value for scope in Scope}
    needed: set[str] = ask(
        "field_needs_scope",
        lambda: {r["bindings"]["scope"] for r in oso.query_rule("field_needs_scope", Variable("f"), Variable("scope"))},
        set(),
    )
    given = ask("has_scope", lambda: {s for s in known if oso.query_rule_once("has_scope", grant, s)}, known)
    for scope in sorted(needed - known):
        if not SCOPE_SHAPED.fullmatch(scope):  # scope-shaped ones are reported where they are written
            problems.append(sources.problem("error", f"unknown scope {scope!r}", sources.find(f'"{scope}"')))
    for scope in sorted(known - given):
        problems.append(
            sources.problem(
                "error",
                f"scope {scope!r} of api/scopes.py has no has_scope rule: add "
                f'`has_scope(grant, "{scope}") if grant.{Scope.of(scope).column} = true;`',
            )
        )
    return problems
