"""Operator commands: `partner-api alerts [deliver]`, the extraction alerts and their webhook."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from api.data.database import make_async_engine, make_session_factory, sqlite_writer_lock
from api.ledger import exposure as reports
from api.ledger.webhook import DeliveryRound, WebhookSender
from api.operators.account_commands import _when
from api.operators.ledger_commands import Format, ListFormat, ListFormatOption, _columns, _print, _session
from api.settings import get_settings

alerts_app = typer.Typer(
    invoke_without_command=True, help="Extraction alerts (warnings, refusals, churn, quarantines) and their webhook."
)


@alerts_app.callback()
def alerts(
    context: typer.Context,
    partner: Annotated[str | None, typer.Option(help="Only this partner's alerts (name).")] = None,
    since: Annotated[str | None, typer.Option(help="ISO 8601 with zone; default: every alert.")] = None,
    format: ListFormatOption = ListFormat.TABLE,
) -> None:
    """The alerts, oldest first, with their evidence: kind, partner, key, practice, time, window,
    distinct patients already read in it, new ones refused, the limit, the warning's fraction, and
    the delivery to the operators' webhook (delivered, pending, retrying)."""
    if context.invoked_subcommand is not None:
        return
    with _session() as session:
        found = reports.alerts(session, partner, _when(since, "--since"))
    _print(found, Format(format), "Extraction alerts", _columns(reports.Alert))


@alerts_app.command("deliver")
def deliver() -> None:
    """Send the alerts due to PARTNER_API_ALERT_WEBHOOK_URL now (the API's workers do it too);
    what fails waits for its next attempt. Exit 1 when something failed."""
    settings = get_settings()
    if not settings.alert_webhook_url:
        typer.secho("error: PARTNER_API_ALERT_WEBHOOK_URL is not set", err=True, fg=typer.colors.RED)
        raise typer.Exit(1)

    async def run() -> DeliveryRound:
        engine = make_async_engine(settings.database_url)
        try:
            return await WebhookSender(
                settings, make_session_factory(engine), sqlite_writer_lock(engine)
            ).deliver_all_due()
        finally:
            await engine.dispose()

    done = asyncio.run(run())
    typer.echo(f"delivered {done.delivered} alert(s); {done.failed} failed and will be retried")
    if done.failed:
        raise typer.Exit(1)
