"""Operator commands: `partner-api documents add|list|show|remove`, over `api.documents.service`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from api.documents import service
from api.operators.account_commands import _session

documents_app = typer.Typer(no_args_is_help=True, help="Partners' trusted documents (registered operations).")


def checker() -> service.DocumentChecker:
    """The schema, limits and policy the server runs with: the policy in force (its latest release,
    as a worker starts with it), not necessarily the shipped one."""
    from api.http.policy_in_force import starting_policy
    from api.schema import build_schema
    from api.settings import get_settings

    settings = get_settings()
    schema = build_schema(settings)
    authorizer = starting_policy(settings).current.authorizer
    return service.DocumentChecker(schema._schema, settings, schema.rules, authorizer)


@documents_app.command("add")
def documents_add(
    partner: str,
    manifest: Annotated[Path, typer.Argument(help="graphql-codegen, relay-compiler or Apollo manifest (JSON).")],
) -> None:
    """Register every document of MANIFEST for PARTNER, or none when one is refused (each problem listed)."""
    try:
        data = manifest.read_bytes()
    except OSError as error:
        raise typer.BadParameter(f"cannot read {manifest}: {error.strerror}", param_hint="MANIFEST") from None
    with _session() as session:
        registered = service.register(session, checker(), partner, data)
        for item in registered:
            row = item.row
            typer.echo(f"{row.document_id}  {item.status:9}  {row.operation_type:8} {row.operation_name or '-':24} "
                       f"cost {row.cost}")
    typer.echo(f"{len(registered)} document(s) registered for {partner}")


@documents_app.command("list")
def documents_list(
    partner: str,
    removed: Annotated[bool, typer.Option("--removed", help="Include removed documents.")] = False,
) -> None:
    """A partner's documents: id, operation, worst-case cost, when registered (and removed)."""
    with _session() as session:
        for row in service.listed(session, partner, with_removed=removed):
            state = f"removed {row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "live"
            typer.echo(f"{row.document_id}  {row.operation_type:8} {row.operation_name or '-':24} cost {row.cost:<5} "
                       f"registered {row.registered_at:%Y-%m-%d %H:%M}  {state}")


@documents_app.command("show")
def documents_show(partner: str, document_id: str) -> None:
    """One document: its text, cost, the fields and scopes it reads, and whether it runs through a compiled plan."""
    from graphql import parse

    from api.compiled.plan import compile_plan, described

    with _session() as session:
        row = service.show(session, partner, document_id)
        plan = described(compile_plan(checker().schema, parse(row.text)))
        typer.echo(f"id          {row.document_id}\noperation   {row.operation_type} {row.operation_name or '-'}\n"
                   f"plan        {plan}\n"
                   f"cost        {row.cost} (worst case)\nscopes      {', '.join(row.scopes.splitlines()) or '-'}\n"
                   f"fields      {row.fields}\nfrom        {row.manifest_format} manifest\n"
                   f"registered  {row.registered_at.isoformat()}\nremoved     "
                   f"{row.revoked_at.isoformat() if row.revoked_at else '-'}\n\n{row.text}")


@documents_app.command("remove")
def documents_remove(partner: str, document_id: str) -> None:
    """Revoke a document: refused from the partner's very next request, in every worker."""
    with _session() as session:
        row = service.remove(session, partner, document_id)
    typer.echo(f"removed {row.document_id} ({row.operation_name or '-'}) for {partner}")
