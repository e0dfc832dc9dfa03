"""`partner-api`: the operator's command line. Each command calls the same services as the API."""

import os
import secrets
from pathlib import Path
from typing import Annotated

import typer

from api.operators.account_commands import grant_app, key_app, partner_app
from api.operators.alert_commands import alerts_app
from api.operators.document_commands import documents_app
from api.operators.ledger_commands import reports_app
from api.operators.oauth_commands import client_app, oauth_app
from api.settings import get_settings
from authz.cli import policy_app

app = typer.Typer(no_args_is_help=True, help="Partner API for medical appointments: run it and operate it.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
app.add_typer(db_app, name="db")
app.add_typer(partner_app, name="partner")
app.add_typer(key_app, name="key")
app.add_typer(grant_app, name="grant")
app.add_typer(client_app, name="client")
app.add_typer(oauth_app, name="oauth")
app.add_typer(policy_app, name="policy")
app.add_typer(reports_app)  # exposure, ledger purge
app.add_typer(alerts_app, name="alerts")
app.add_typer(documents_app, name="documents")


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply the alembic migrations to the configured database."""
    from api.data.database import make_sync_engine
    from api.data.migrate import upgrade

    engine = make_sync_engine(get_settings().database_url)
    upgrade(engine, revision)
    typer.echo(f"database at {revision}: {engine.url.render_as_string(hide_password=True)}")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port.")] = None,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    graphiql: Annotated[
        bool, typer.Option("--graphiql", help="Also serve GraphiQL on GET /graphql (or PARTNER_API_GRAPHIQL=true).")
    ] = False,
) -> None:
    """Serve the API with gunicorn over uvicorn workers; logs are JSON lines on stderr. A worker stuck for
    PARTNER_API_WORKER_TIMEOUT_SECONDS is replaced. Refuses several workers, or PostgreSQL, without
    PARTNER_API_SECRET_KEY, and a policy directory that fails `policy check`."""
    from api.http.policy_in_force import PolicyRefused
    from api.operators.server import serve as run_server
    from api.operators.server import unsafe_setup

    if graphiql:  # the workers build their app from the environment, after the fork
        os.environ["PARTNER_API_GRAPHIQL"] = "true"
        get_settings.cache_clear()
    settings = get_settings()
    refusal = unsafe_setup(settings, workers)
    if refusal:
        typer.secho(f"error: {refusal}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2)
    try:
        run_server(settings, host or settings.host, port or settings.port, workers)
    except PolicyRefused as refused:
        typer.secho(f"error: {refused}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from None


@app.command()
def seed(
    size: Annotated[str, typer.Option(help="small (tests), medium (demo) or large (benchmarks).")] = "medium",
    seed: Annotated[int, typer.Option(help="Same seed, same data.")] = 2020,
    reference_date: Annotated[
        str | None, typer.Option(help="Day the data is centred on (YYYY-MM-DD); default: fixed by the seed.")
    ] = None,
    keys_file: Annotated[Path | None, typer.Option(help="Where to write the demo keys (JSON).")] = None,
) -> None:
    """Migrate, then fill an empty database with deterministic French demo data and partners."""
    from datetime import date

    from api.data.database import make_sync_engine
    from api.data.migrate import upgrade

    _require_demo_extra()
    from api.data.seed import SeedError
    from api.data.seed import seed as run_seed

    settings = get_settings()
    engine = make_sync_engine(settings.database_url)
    upgrade(engine)
    try:
        day = date.fromisoformat(reference_date) if reference_date else None
    except ValueError:
        raise typer.BadParameter("use YYYY-MM-DD", param_hint="--reference-date") from None
    try:
        report = run_seed(engine, size, seed, keys_file or settings.demo_keys_file, day)
    except SeedError as error:
        typer.secho(f"error: {error}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from None
    typer.echo(", ".join(f"{count} {what}" for what, count in report.counts.items()))
    typer.echo(f"centred on {report.reference_date}, seeded in {report.seconds} s")
    typer.echo(f"demo keys written to {keys_file or settings.demo_keys_file}")


@app.command()
def demo(
    size: Annotated[str, typer.Option(help="Data set to seed when the database is empty.")] = "medium",
) -> None:
    """Migrate, seed when empty, print the demo keys, and serve the API with GraphiQL."""
    import json
    from datetime import date

    from sqlalchemy import func, select
    from sqlalchemy.orm import Session

    from api.data.database import make_sync_engine
    from api.data.migrate import upgrade
    from api.data.models import Practice

    _require_demo_extra()
    from api.data.seed import seed as run_seed

    settings = get_settings()
    engine = make_sync_engine(settings.database_url)
    upgrade(engine)
    with Session(engine) as session:
        empty = not session.scalar(select(func.count()).select_from(Practice))
    if empty:
        typer.echo(f"seeding the {size} demo data set (once)...")
        # Centred on today, so the demo has appointments this week and live grants.
        run_seed(engine, size, keys_file=settings.demo_keys_file, reference_date=date.today())
    if settings.demo_keys_file.exists():
        from api.documents.demo import DEMO_PARTNER, add_trusted_demo_key
        from api.operators.document_commands import checker

        keys = json.loads(settings.demo_keys_file.read_text())
        trusted = add_trusted_demo_key(engine, checker(), keys)  # once: then kept in the keys file
        settings.demo_keys_file.write_text(json.dumps(keys, indent=2, ensure_ascii=False) + "\n")
        typer.echo(f"\nDemo partners, open keys for GraphiQL (keys also in {settings.demo_keys_file}):")
        for name, entry in keys.items():
            typer.echo(f"  {name:<13} {entry['status']:<9} {len(entry['grants'])} grant(s)  {entry['key']}")
        typer.echo(f"\n{DEMO_PARTNER}'s trusted key, which runs only its registered documents, by id:")
        typer.echo(f"  {trusted['trusted_key']}")
        for operation, document_id in trusted["documents"].items():
            typer.echo(f"  {operation:<8} {document_id}")
        example = trusted["documents"].get("Me", next(iter(trusted["documents"].values())))
        typer.echo(
            f"  e.g. curl -s http://{settings.host}:{settings.port}/graphql -H 'Authorization: Bearer "
            f"{trusted['trusted_key']}' -H 'Content-Type: application/json' -d '{{\"documentId\": \"{example}\"}}'"
        )
    engine.dispose()
    typer.echo(f"\nGraphiQL: http://{settings.host}:{settings.port}/graphql  (paste a key in the key field)\n")
    os.environ.setdefault("PARTNER_API_GRAPHIQL", "true")  # on for the demo, unless turned off explicitly
    if not settings.secret_key:  # the demo's cursors survive its restarts, as the partner guide says
        os.environ["PARTNER_API_SECRET_KEY"] = demo_secret_key(settings.demo_keys_file.with_name("demo-secret-key"))
    get_settings.cache_clear()
    serve(host=None, port=None, workers=1, graphiql=False)


def demo_secret_key(path: Path) -> str:
    """The demo's secret key, made once and kept in `path` (readable by its owner only): written whole
    beside it, then linked in place, so that a demo starting at the same time reads the one that won."""
    if not path.exists():
        written = path.with_name(f".{path.name}.{os.getpid()}")
        with os.fdopen(os.open(written, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as file:
            file.write(secrets.token_urlsafe(32) + "\n")
        try:
            os.link(written, path)
        except FileExistsError:
            pass
        finally:
            written.unlink()
    return path.read_text().strip()


def _require_demo_extra() -> None:
    """The seeder's libraries are the `demo` extra: a production install leaves them out."""
    from importlib.util import find_spec

    missing = [name for name in ("faker", "dateutil") if find_spec(name) is None]
    if missing:
        typer.secho(
            f"error: the demo data needs {', '.join(missing)}: pip install 'partner-api[demo]'", err=True, fg="red"
        )
        raise typer.Exit(1)


@app.command("export-schema")
def export_schema(
    output: Annotated[Path, typer.Option(help="The file to write.")] = Path("schema.graphql"),
) -> None:
    """Write the GraphQL schema, as the code defines it, to --output. Its `@requiresScopes` and "Needs"
    notes are the shipped policy's (authz/): a released policy of your own decides requests, not these."""
    from api.schema import schema

    output.write_text(schema.as_str() + "\n")
    typer.echo(f"wrote {output}")


def main() -> None:
    app()
