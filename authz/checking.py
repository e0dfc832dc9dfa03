"""`partner-api policy check`: every mistake a policy author can make, found before a request is.

The policy is loaded exactly as the application loads it (the classes of `authz.engine`), and
then exercised: every permission of every resource block is compiled to SQL, and the field
rules are run on a grant holding every scope. Each problem names its file and line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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
from authz.engine import POLAR_CLASSES, POLICY_FILES, new_oso
from authz.polar_source import LOCATION, PolicySources, Problem, Severity

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
    sources = PolicySources.read(files)
    if sources.problems:
        return CheckReport(files, 0, tuple(sources.problems))
    oso, problems = load(files, sources)
    if oso is not None and not any(p.severity == "error" for p in problems):
        problems += _compile_row_permissions(oso, sources)
        problems += _run_field_rules(oso, sources)
    return CheckReport(files, sources.rule_count(), tuple(problems))


def load(files: Sequence[Path], sources: PolicySources) -> tuple[Oso | None, list[Problem]]:
    """An Oso with the application's classes and these files, and what loading them reported."""
    loaded = new_oso()
    oso: Oso | None = loaded
    ffi = loaded.ffi_polar
    # Polar prints its warnings to stdout; collect them instead.
    messages: list[str] = []
    ffi.process_messages = lambda: messages.extend(process_messages(ffi.next_message))  # type: ignore[method-assign]  # polar's hook, replaced on purpose
    problems: list[Problem] = []
    try:
        loaded.load_files([str(f) for f in files])
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
                problems.append(sources.problem("error", f"{what} cannot be compiled to SQL: {error}", block.location))
                continue
            where = statement.whereclause
            if where is None or str(where.compile(dialect=sqlite.dialect())) in ("0 = 1", "false"):
                problems.append(
                    sources.problem(
                        "error",
                        f"nothing allows {what}: its SQL filter is always false. Either no has_permission "
                        "rule gives it, or a helper rule types its argument (write `has_scope(grant, ...)`, "
                        "not `has_scope(grant: Grant, ...)`): oso cannot type a partial record.",
                        block.location,
                    )
                )
    return problems


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
                problems.append(sources.problem("error", f"{what}: {error}"))
            return default

    ask("the field rules fail on a live grant", lambda: oso.authorized_fields(actor, "read", grant), set())
    known = {scope.value for scope in Scope}
    needed: set[str] = ask(
        "field_needs_scope",
        lambda: {r["bindings"]["scope"] for r in oso.query_rule("field_needs_scope", Variable("f"), Variable("scope"))},
        set(),
    )
    given = ask("has_scope", lambda: {s for s in known if oso.query_rule_once("has_scope", grant, s)}, known)
    for scope in sorted(needed - known):
        problems.append(
            sources.problem(
                "error", f"unknown scope {scope!r} (known: {', '.join(sorted(known))})", sources.find(f'"{scope}"')
            )
        )
    for scope in sorted(known - given):
        problems.append(
            sources.problem(
                "error",
                f"scope {scope!r} of api/scopes.py has no has_scope rule: add "
                f'`has_scope(grant, "{scope}") if grant.{Scope.of(scope).column} = true;`',
            )
        )
    return problems
