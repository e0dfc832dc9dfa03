"""`partner-api policy check|test|explain`: the policy author's commands, thin over
`authz.checking`, `authz.policy_testing` and `authz.explain`."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from polar.exceptions import OsoError
from rich.console import Console
from rich.measure import Measurement
from rich.table import Column, Table
from rich.text import Text

if TYPE_CHECKING:
    from oso import Oso

    from authz.adapter import SqlAlchemyFilterAdapter
    from authz.checking import CheckReport
    from authz.explain import Explanation
    from authz.polar_source import PolicySources

policy_app = typer.Typer(no_args_is_help=True, help="Check, test, explain and reload the authorization policy.")

PolicyOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--policy",
        help="A policy directory, or a .polar file that replaces the file of the same name in the policy "
        "directory (repeatable). Default: the policy directory (PARTNER_API_POLICY_DIR, else authz/).",
    ),
]


class Format(StrEnum):
    TABLE = "table"
    JSON = "json"


@policy_app.command("check")
def check(policy: PolicyOption = None) -> None:
    """Load the policy and exercise it, as the server would; exit 1 on any error.

    Reports syntax, unknown classes, fields and scopes, unused variables, resource blocks, permissions
    that cannot compile to SQL, and field rules naming no field of the schema, each at its file:line."""
    from authz.checking import check_policy
    from authz.policy_dir import selected_files

    report = check_policy(selected_files(policy))
    _print_problems(report)
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
    """Check the policy, then run its cases written in YAML, one PASS/FAIL line each.

    Exit 1 if the policy does not pass `check` or a case fails."""
    from authz.engine import Authorizer
    from authz.policy_testing import CASES_DIR, CaseError, load_cases, run_cases

    sources = _checked(policy)
    try:
        cases = load_cases(paths or [CASES_DIR])
        results = run_cases(cases, Authorizer(_oso(sources)))
    except CaseError as error:
        typer.secho(f"error: {error}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from None
    except (OsoError, AttributeError) as error:
        _fails_at_runtime(sources, error)
    for result in results:
        typer.secho(str(result), fg=None if result.passed else typer.colors.RED)
    failed = sum(not r.passed for r in results)
    typer.echo(f"{len(results) - failed} passed, {failed} failed")
    if failed:
        raise typer.Exit(1)


@policy_app.command("reload")
def reload() -> None:
    """Check the policy directory and put it in force on the running servers, without a restart.

    The directory is PARTNER_API_POLICY_DIR (else authz/); the servers are those on the configured
    database, and every worker loads it on its next request. A policy that fails `policy check` is
    never loaded (exit 1): the one in force keeps serving. SIGHUP to `partner-api serve` does the same."""
    from sqlalchemy.exc import SQLAlchemyError

    from api.operators.server import reload_policy
    from api.settings import get_settings

    try:
        release = reload_policy(get_settings())
    except SQLAlchemyError as error:
        first_line = str(error).splitlines()[0]
        typer.secho(f"error: the database cannot take the release ({first_line}); nothing changed", err=True, fg="red")
        raise typer.Exit(1) from None
    _print_problems(release.report, err=not release.report.ok)
    if not release.report.ok:
        typer.secho(release.summary, err=True, fg=typer.colors.RED)
        raise typer.Exit(1)
    typer.echo(release.summary)


@policy_app.command("explain")
def explain(
    partner: Annotated[str, typer.Option(help="Partner name (or ptn_ id).")],
    practice: Annotated[
        str | None, typer.Option(help="Practice name (or prc_ id); given by --appointment otherwise.")
    ] = None,
    appointment: Annotated[
        str | None,
        typer.Option(help="An appointment (apt_ id): whether it (and its patient) is among each rule's rows."),
    ] = None,
    field: Annotated[str | None, typer.Option(help="One field, written Type.field (Patient.phone).")] = None,
    format: Annotated[Format, typer.Option("--format", help="table or json.")] = Format.TABLE,
    policy: PolicyOption = None,
) -> None:
    """What PARTNER can do and read at PRACTICE, or of one APPOINTMENT, and why.

    On the configured database: each decision, the grant and the rule (file:line) behind it; about
    an appointment, whether it is among each row rule's rows, and each field on its side of the
    reading horizon. Of the policy in force (the latest release); with --policy, of those files,
    saying whether they are the policy in force."""
    from sqlalchemy.orm import Session

    from api.data.database import make_sync_engine
    from api.settings import get_settings
    from authz.explain import ExplainError
    from authz.explain import explain as run_explain

    sources, described = _explained_policy(policy)
    engine = make_sync_engine(get_settings().database_url)
    try:
        with Session(engine) as session:
            result = run_explain(session, partner, practice, sources=sources, appointment_id=appointment, field=field)
    except ExplainError as error:
        typer.secho(f"error: {error}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from None
    except (OsoError, AttributeError) as error:
        _fails_at_runtime(sources, error)
    finally:
        engine.dispose()
    if format is Format.JSON:
        typer.echo(json.dumps({"policy": described, **result.as_json()}, indent=2, ensure_ascii=False))
        return
    typer.echo(f"policy: {described}")
    _print_explanation(result)


def _explained_policy(policy: list[Path] | None) -> tuple[PolicySources, str]:
    """The texts to explain and what they are: the policy in force, unless --policy names files, which
    may differ from it (an operator asking why a partner reads a field wants the policy that decides)."""
    from api.http.policy_in_force import latest_release, policy_digest
    from api.settings import get_settings
    from authz.polar_source import PolicySources

    release = latest_release(get_settings().database_url)
    if policy is None and release is not None:
        return PolicySources(dict(release.sources), []), f"release {release.id} in force (from {release.directory})"
    sources = _checked(policy)
    files = ", ".join(sorted(sources.texts))
    if release is None:
        return sources, f"the files {files} (no release yet: what a server starts with)"
    if policy_digest({Path(name).name: text for name, text in sources.texts.items()}) == release.digest:
        return sources, f"the files {files}, the same as release {release.id} in force"
    return sources, (
        f"the files {files}, NOT the policy in force (release {release.id}, from {release.directory}): "
        "`partner-api policy reload` releases them"
    )


def _checked(policy: list[Path] | None) -> PolicySources:
    """The selected policy's texts once they pass `policy check`; its report and exit 1 otherwise."""
    from authz.checking import check_sources
    from authz.polar_source import PolicySources
    from authz.policy_dir import selected_files

    files = selected_files(policy)
    sources = PolicySources.read(files)
    report = check_sources(files, sources)
    if not report.ok:
        _print_problems(report, err=True)
        typer.secho(f"{report.summary}: see `partner-api policy check`", err=True, fg=typer.colors.RED)
        raise typer.Exit(1)
    return sources


def _oso(sources: PolicySources, adapter: SqlAlchemyFilterAdapter | None = None) -> Oso:
    from authz.engine import load_texts, new_oso

    return load_texts(new_oso(adapter), sources.texts)


def _print_problems(report: CheckReport, err: bool = False) -> None:
    for problem in report.problems:
        color = typer.colors.RED if problem.severity == "error" else typer.colors.YELLOW
        typer.secho(str(problem), fg=color, err=err)


def _fails_at_runtime(sources: PolicySources, error: Exception) -> NoReturn:
    """A rule that passed `check` and fails on a record: said as `check` says it, never as a traceback."""
    from authz.checking import in_policy_terms

    problem = sources.problem("error", f"the policy fails while deciding: {in_policy_terms(str(error))}")
    typer.secho(str(problem), err=True, fg=typer.colors.RED)
    raise typer.Exit(1) from None


def _print_explanation(result: Explanation) -> None:
    # Names are never cut short: a narrow terminal wraps the explanations, not the rules and fields.
    console = Console()
    console.print(
        f"[bold]{result.partner}[/] ({result.partner_id}) at [bold]{result.practice}[/] ({result.practice_id}), "
        f"at {result.at:%Y-%m-%d %H:%M} UTC",
        soft_wrap=True,
    )
    if result.record is not None:
        r = result.record
        console.print(
            f"appointment [bold]{r.appointment}[/] ({r.status}, booked by {r.booked_by}), "
            f"{'inside' if r.in_horizon else 'outside'} the reading horizon; its patient {r.patient} "
            f"{'inside' if r.patient_in_horizon else 'outside'} it",
            soft_wrap=True,
        )
    for note in result.notes:
        console.print(f"[yellow]{note}[/]", soft_wrap=True)
    held = [
        (g.grant, ", ".join(g.scopes) or "(none)", "[green]live[/]" if g.live else f"[red]{g.state}[/]", g.horizon)
        for g in result.grants
    ]
    _print_table(console, _table("Grants", ("grant", "scopes", "state", "reading horizon"), held))
    about = "this record" if result.record is not None else "allowed"
    lines = [(r.resource, r.action, _yes(r.allowed), r.through, ", ".join(r.rules) or "-", r.how) for r in result.rows]
    _print_table(console, _table("Rows", ("resource", "action", about, "through", "rule", "decided by"), lines))
    here = "of this record" if result.record is not None else "inside horizon"
    cells = []
    for f in result.fields:
        reason = f.reason
        satisfied = "satisfied" if reason and reason.satisfied else "not satisfied"
        rule = f"{reason.at or '?'} {reason.rule} {satisfied}" if reason else "no rule: never readable"
        side = f" ({_side(f.record_in_horizon)})" if f.record_in_horizon is not None else ""
        why = (reason.why if reason else "-") + (f"; {f.outside_why}" if f.outside_why else "")
        cells.append(
            (f.field, _yes(f.readable_here) + side, _yes(f.readable_outside_horizon), f.grant or "-", rule, why)
        )
    _print_table(console, _table("Fields", ("field", here, "outside horizon", "through", "rule", "why"), cells))


def _table(title: str, headers: Sequence[str], lines: Sequence[Sequence[str]]) -> Table:
    table = Table(*(_whole(h, [line[i] for line in lines]) for i, h in enumerate(headers)), title=title)
    for line in lines:
        table.add_row(*line)
    return table


def _print_table(console: Console, table: Table) -> None:
    """At the terminal's width, or wider when its names would not fit whole: a long line beats a cut name."""
    needed = Measurement.get(console, console.options.update_width(10_000), table).minimum
    console.print(table, width=max(console.width, needed), crop=False)


def _whole(header: str, cells: Iterable[str]) -> Column:
    """A column of names (fields, rules): at least as wide as its longest word, so that a narrow
    terminal wraps it between words and never cuts a name short with an ellipsis."""
    longest = max((len(word) for cell in cells for word in Text.from_markup(cell).plain.split()), default=1)
    return Column(header, min_width=max(longest, len(header)))


def _side(in_horizon: bool) -> str:
    return "inside the horizon" if in_horizon else "outside the horizon"


def _yes(allowed: bool) -> str:
    return "[green]yes[/]" if allowed else "[red]no[/]"
