"""`partner-api`: the operator's command line. Each command calls the same services as the API."""

from pathlib import Path
from typing import Annotated

import typer

from api.operator_cli import grant_app, key_app, partner_app
from api.settings import get_settings

app = typer.Typer(no_args_is_help=True, help="Partner API for medical appointments: run it and operate it.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
app.add_typer(db_app, name="db")
app.add_typer(partner_app, name="partner")
app.add_typer(key_app, name="key")
app.add_typer(grant_app, name="grant")


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply the alembic migrations to the configured database."""
    from api.database import make_sync_engine
    from api.migrate import upgrade

    engine = make_sync_engine(get_settings().database_url)
    upgrade(engine, revision)
    typer.echo(f"database at {revision}: {engine.url.render_as_string(hide_password=True)}")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port.")] = None,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
) -> None:
    """Serve the API (and GraphiQL on GET /graphql) with uvicorn."""
    import uvicorn

    settings = get_settings()
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        log_level=settings.log_level,
    )


@app.command("export-schema")
def export_schema(output: Path = Path("schema.graphql")) -> None:
    """Write the GraphQL schema, as the code defines it, to OUTPUT."""
    from api.schema import schema

    output.write_text(schema.as_str() + "\n")
    typer.echo(f"wrote {output}")


def main() -> None:
    app()
