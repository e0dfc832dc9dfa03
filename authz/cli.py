"""`partner-api policy check|test|explain`: the policy author's commands, thin over
`authz.checking`, `authz.policy_testing` and `authz.explain`."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from polar.exceptions import OsoError
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from authz.explain import Explanation

policy_app = typer.Typer(no_args_is_help=True, help="Check, test and explain the authorization policy.")

PolicyOption = Annotated[
    list[Path] | None, typer.Option("--policy", help="A .polar file to use instead of authz/*.polar (repeatable).")
]


class Format(StrEnum):
    TABLE = "table"
    JSON = "json"


@policy_app.command("check")
def check(
    files: Annotated[list[Path] | None, typer.Argument(help="Policy files (default: authz/*.polar).")] = None,
) -> None:
    """Load the policy and exercise it: syntax, unknown classes, unused variables, resource blocks,
    permissions that cannot compile to SQL, scopes without rules. Exit 1 on any error."""
    from authz.checking import check_policy
    from authz.engine import POLICY_FILES

    report = check_policy(tuple(files) if files else POLICY_FILES)
    for problem in report.problems:
        color = typer.colors.RED if problem.severity == "error" else typer.colors.YELLOW
        typer.secho(str(problem), fg=color)
    typer.echo(report.summary)
    if not report.ok:
        raise typer.Exit(1)


@policy_app.command("test")
def test(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="YAML case files or folders (default: authz/policy_tests).")
    ] = None,
    policy: PolicyOption = None,
) -> None:
    """Run the policy cases written in YAML, one PASS/FAIL line each; exit 1 if one fails."""
    from authz.engine import Authorizer, build_oso
    from authz.policy_testing import CASES_DIR, CaseError, load_cases, run_cases

    try:
        cases = load_cases(paths or [CASES_DIR])
        results = run_cases(cases, Authorizer(build_oso(tuple(policy))) if policy else None)
    except CaseError as error:
        typer.secho(f"error: {error}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from None
    except OsoError as error:
        _policy_does_not_load(error)
    for result in results:
        typer.secho(str(result), fg=None if result.passed else typer.colors.RED)
    failed = sum(not r.passed for r in results)
    typer.echo(f"{len(results) - failed} passed, {failed} failed")
    if failed:
        raise typer.Exit(1)


@policy_app.command("explain")
def explain(
    partner: Annotated[str, typer.Option(help="Partner name (or ptn_ id).")],
    practice: Annotated[str, typer.Option(help="Practice name (or prc_ id).")],
    format: Annotated[Format, typer.Option("--format", help="table or json.")] = Format.TABLE,
    policy: PolicyOption = None,
) -> None:
    """What PARTNER can do and read at PRACTICE in the configured database, through which
    grant and which rule."""
    from sqlalchemy.orm import Session

    from api.data.database import make_sync_engine
    from api.settings import get_settings
    from authz.engine import POLICY_FILES
    from authz.explain import ExplainError
    from authz.explain import explain as run_explain

    engine = make_sync_engine(get_settings().database_url)
    try:
        with Session(engine) as session:
            result = run_explain(session, partner, practice, policy_files=tuple(policy) if policy else POLICY_FILES)
    except ExplainError as error:
        typer.secho(f"error: {error}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from None
    except OsoError as error:
        _policy_does_not_load(error)
    finally:
        engine.dispose()
    if format is Format.JSON:
        typer.echo(json.dumps(result.as_json(), indent=2, ensure_ascii=False))
        return
    _print_explanation(result)


def _policy_does_not_load(error: OsoError) -> None:
    first_line = str(error).splitlines()[0]
    typer.secho(
        f"error: the policy does not load ({first_line}); see `partner-api policy check`", err=True, fg=typer.colors.RED
    )
    raise typer.Exit(1) from None


def _print_explanation(result: Explanation) -> None:
    console = Console()
    console.print(
        f"[bold]{result.partner}[/] ({result.partner_id}) at [bold]{result.practice}[/] ({result.practice_id}), "
        f"at {result.at:%Y-%m-%d %H:%M} UTC"
    )
    for note in result.notes:
        console.print(f"[yellow]{note}[/]")
    grants = Table("grant", "scopes", "state", "reading horizon", title="Grants")
    for g in result.grants:
        grants.add_row(
            g.grant, ", ".join(g.scopes) or "(none)", "[green]live[/]" if g.live else f"[red]{g.state}[/]", g.horizon
        )
    console.print(grants)
    rows = Table("resource", "action", "allowed", "through", "rule", "decided by", title="Rows and actions")
    for r in result.rows:
        rows.add_row(r.resource, r.action, _yes(r.allowed), r.through, ", ".join(r.rules) or "-", r.how)
    console.print(rows)
    fields = Table("field", "readable", "outside horizon", "through", "rule", "why", title="Fields")
    for f in result.fields:
        reason = f.reason
        satisfied = "satisfied" if reason and reason.satisfied else "not satisfied"
        fields.add_row(
            f.field,
            _yes(f.readable),
            _yes(f.readable_outside_horizon),
            f.grant or "-",
            f"{reason.rule} {satisfied}" if reason else "no rule: never readable",
            (reason.why if reason else "-") + (f"; {f.outside_why}" if f.outside_why else ""),
        )
    console.print(fields)


def _yes(allowed: bool) -> str:
    return "[green]yes[/]" if allowed else "[red]no[/]"
