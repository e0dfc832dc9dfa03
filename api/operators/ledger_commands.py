"""`partner-api exposure|alerts|ledger purge`: the data-protection officer's and the operator's
commands over the access ledger, thin over `api.ledger.exposure` and `api.ledger.retention`."""

from __future__ import annotations

import csv
import dataclasses
import errno
import json
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext, redirect_stdout
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy.orm import Session

from api.data.database import make_sync_engine
from api.documents.manifests import normalized_id
from api.ledger import exposure as reports
from api.ledger import exposure_html, partitions, retention
from api.ledger.access import group_names
from api.operators.account_commands import _when
from api.operators.accounts import OperatorError
from api.operators.oauth_clients import client_credential_prefix
from api.settings import MAX_RETENTION_DAYS, get_settings
from api.timeutil import utcnow

# Merged into `partner-api` itself: `partner-api exposure`, `partner-api alerts`, `partner-api ledger purge`.
reports_app = typer.Typer()
ledger_app = typer.Typer(no_args_is_help=True, help="The access ledger.")
reports_app.add_typer(ledger_app, name="ledger")

DEFAULT_PERIOD = timedelta(days=30)


class Format(StrEnum):
    TABLE = "table"
    CSV = "csv"
    JSON = "json"
    HTML = "html"  # --partner only: one self-contained page with charts (api/ledger/exposure_html.py)


class ListFormat(StrEnum):
    """The formats of a list of records (`alerts`): no page is drawn for them."""

    TABLE = "table"
    CSV = "csv"
    JSON = "json"


FormatOption = Annotated[Format, typer.Option("--format", help="table, csv or json (html: exposure --partner).")]
ListFormatOption = Annotated[ListFormat, typer.Option("--format", help="table, csv or json.")]


@contextmanager
def _session(snapshot: bool = True) -> Iterator[Session]:
    """A session for one command; an `OperatorError` becomes a clean exit 1 with its message.
    `snapshot`: every query sees the database as of the first (the figures of a report agree)."""
    engine = make_sync_engine(get_settings().database_url)
    if snapshot and engine.dialect.name == "postgresql":  # SQLite's transactions see one snapshot already
        engine = engine.execution_options(isolation_level="REPEATABLE READ")
    try:
        with Session(engine) as session:
            yield session
    except OperatorError as error:
        typer.secho(f"error: {error}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()


def _columns(record_type: type) -> list[str]:
    """A report record's columns; its counts per ledger group (`with_groups`) as one column each."""
    columns = []
    for field in dataclasses.fields(record_type):
        if field.name == "with_groups":
            columns += [f"with_{group.name}" for group in reports.COUNTED_GROUPS]
        else:
            columns.append(field.name)
    return columns


def _value(record: Any, column: str) -> Any:
    if column.startswith("with_") and hasattr(record, "with_groups"):
        return record.with_groups[column.removeprefix("with_")]
    return getattr(record, column)


def _dicts(records: Sequence[Any], columns: Sequence[str], as_text: bool) -> list[dict[str, Any]]:
    """Records as dicts of `columns`: times in ISO 8601, field groups by name ("patient+identity" as text),
    a record deleted since "(deleted)" as text and null otherwise (JSON)."""
    rows = []
    for record in records:
        row = {}
        for name in columns:
            value = _value(record, name)
            if name == "field_groups":
                value = "+".join(group_names(value)) if as_text else group_names(value)
            elif isinstance(value, datetime):
                value = value.isoformat(timespec="seconds")
            elif value == reports.DELETED and not as_text:
                value = None
            row[name] = value
        rows.append(row)
    return rows


# A cell a spreadsheet would run as a formula (OWASP, CSV injection): patients' names are the partners'
# bookings' text, `=HYPERLINK(...)` included. Prefixed with a quote, it is shown as written.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _inert(value: Any) -> Any:
    return "'" + value if isinstance(value, str) and value.startswith(_FORMULA_START) else value


def _print(records: Sequence[Any], format: Format, title: str, columns: Sequence[str]) -> None:
    """Records as a table, CSV with a header, or a JSON list."""
    if format is Format.HTML:  # a page is drawn for the exposure of a partner only
        raise typer.BadParameter("--format html goes with `exposure --partner`", param_hint="--format")
    rows = _dicts(records, columns, as_text=format is not Format.JSON)
    if format is Format.JSON:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
    elif format is Format.CSV:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        writer.writerows({name: _inert(value) for name, value in row.items()} for row in rows)
    else:
        table = Table(*columns, title=title)
        for row in rows:  # as text: a name holding `[/]` or `[link=...]` is no markup
            table.add_row(*(Text("-" if value is None else str(value)) for value in row.values()))
        # Piped to a file, rich would fold the ids at 80 columns.
        Console(width=None if sys.stdout.isatty() else 240).print(table)


def _period(since: datetime | None, until: datetime | None) -> str:
    start = since.isoformat(timespec="seconds") if since else "the start of the ledger"
    return f"{start} to {until.isoformat(timespec='seconds') if until else 'now'}"


@reports_app.command()
def exposure(
    partner: Annotated[str | None, typer.Option(help="What this partner was shown (name).")] = None,
    patient: Annotated[str | None, typer.Option(help="Which partners were shown this patient (pat_ id).")] = None,
    key: Annotated[str | None, typer.Option(help="Only what this key of the partner was shown (its prefix).")] = None,
    document: Annotated[
        str | None, typer.Option(help="Only what this registered document of the partner read (sha256:<hex>).")
    ] = None,
    client: Annotated[
        str | None, typer.Option(help="Only what this OAuth client of the partner was shown (its client id).")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(help="ISO 8601 with zone; default: 30 days before --until (--partner), no limit (--patient)."),
    ] = None,
    until: Annotated[str | None, typer.Option(help="ISO 8601 with zone, excluded; default: now.")] = None,
    with_names: Annotated[
        bool, typer.Option("--with-names", help="Add the patients' names, to notify them (only public ids otherwise).")
    ] = False,
    format: FormatOption = Format.TABLE,
    output: Annotated[
        Path | None, typer.Option(help="Write the report to this file (default: standard output).")
    ] = None,
) -> None:
    """What a partner was shown: per practice, distinct patients and appointments and which field
    groups, then every patient with what and when (GDPR art. 33/34). Or, with --patient, every
    partner key that was shown one patient, when and what. csv gives the patient (or reader) list;
    html (--partner) one self-contained page: charts per day and per practice, field groups, alerts, patients."""
    if (partner is None) == (patient is None):
        raise typer.BadParameter("give --partner NAME or --patient ID")
    if format is Format.HTML and patient is not None:
        raise typer.BadParameter("--format html goes with --partner")
    if patient is not None and (key is not None or client is not None or with_names or document is not None):
        raise typer.BadParameter("--key, --client, --document and --with-names go with --partner")
    if key is not None and client is not None:
        raise typer.BadParameter("give --key or --client")
    document_id = normalized_id(document) if document is not None else None
    if document is not None and document_id is None:
        raise typer.BadParameter("a document id is sha256:<64 hex digits>", param_hint="--document")
    start, end = _when(since, "--since"), _when(until, "--until")
    if start is not None and start >= (end or utcnow()):
        raise typer.BadParameter("the period is empty: --since must be before --until (or now)", param_hint="--since")
    with _output(output) as out:  # opened first: a path that cannot be written is told before the report is built
        with _session() as session:
            if patient is not None:
                readers = reports.patient_readers(session, patient, start, end)
            else:
                assert partner is not None  # one of the two, checked above
                end = end or utcnow()
                if client is not None:  # a client's requests are recorded under its credential key (api/data/models.py)
                    key = client_credential_prefix(session, client)
                report = reports.partner_exposure(
                    session, partner, start or end - DEFAULT_PERIOD, end, key, with_names, document_id
                )
                if format is Format.HTML:
                    alerts = [a for a in reports.alerts(session, partner, report.since) if a.raised_at < report.until]
                    alerts = [a for a in alerts if key is None or a.key_prefix == key]
        with redirect_stdout(out) if out is not None else nullcontext():
            if patient is not None:
                _print_readers(readers, format)
            elif format is Format.HTML:
                typer.echo(exposure_html.render(report, alerts, with_names), nl=False)
            else:
                _print_exposure(report, format, with_names)
    if output is not None:
        typer.echo(f"wrote {output}", err=True)


@contextmanager
def _output(output: Path | None) -> Iterator[TextIO | None]:
    """The report's file, or None for standard output: written beside it and put in its place once
    whole, so that a command that fails leaves an earlier report as it was."""
    if output is None:
        yield None
        return
    try:
        if output.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
        descriptor, written = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.")
    except OSError as error:
        raise typer.BadParameter(f"cannot write {output}: {error.strerror}", param_hint="--output") from None
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            yield file
        os.replace(written, output)
    finally:
        Path(written).unlink(missing_ok=True)


def _print_exposure(report: reports.PartnerExposure, format: Format, with_names: bool) -> None:
    names = ("first_name", "last_name")
    patient_columns = [c for c in _columns(reports.PatientExposure) if with_names or c not in names]
    if format is Format.JSON:
        typer.echo(
            json.dumps(
                {
                    "partner": report.partner,
                    "key_prefix": report.key_prefix,
                    "document_id": report.document_id,
                    "since": report.since.isoformat(),
                    "until": report.until.isoformat(),
                    "practices": _dicts(report.practices, _columns(reports.PracticeExposure), as_text=False),
                    "documents": _dicts(report.documents, _columns(reports.DocumentExposure), as_text=False),
                    "patients": _dicts(report.patients, patient_columns, as_text=False),
                },
                indent=2,
                ensure_ascii=False,
            )
        )
        return
    if format is Format.TABLE:
        who = report.partner + (f" (key {report.key_prefix})" if report.key_prefix else "")
        who += f" (document {report.document_id})" if report.document_id else ""
        typer.echo(
            f"{who}, from {_period(report.since, report.until)}: {len(report.patients)} patient(s) and "
            f"{sum(p.appointments for p in report.practices)} appointment(s) of {len(report.practices)} practice(s)"
        )
        _print(report.practices, format, "Practices", _columns(reports.PracticeExposure))
        documents = "Documents (none: sent as text by an open key)"
        _print(report.documents, format, documents, _columns(reports.DocumentExposure))
    _print(report.patients, format, "Patients", patient_columns)


def _print_readers(report: reports.PatientReaders, format: Format) -> None:
    if format is Format.JSON:
        typer.echo(
            json.dumps(
                {
                    "patient_id": report.patient_id,
                    "practice_id": report.practice_id,
                    "practice": report.practice,
                    "since": report.since.isoformat() if report.since else None,
                    "until": report.until.isoformat() if report.until else None,
                    "readers": _dicts(report.readers, _columns(reports.Reader), as_text=False),
                },
                indent=2,
                ensure_ascii=False,
            )
        )
        return
    if format is Format.TABLE:
        typer.echo(
            f"{report.patient_id} of {report.practice} ({report.practice_id}), from "
            f"{_period(report.since, report.until)}: "
            f"shown to {len({r.partner for r in report.readers})} partner(s)"
        )
    _print(report.readers, format, "Readers", _columns(reports.Reader))


@ledger_app.command("purge")
def purge(
    older_than: Annotated[
        int | None,
        typer.Option(
            min=1, max=MAX_RETENTION_DAYS, help="Days of ledger to keep; default: PARTNER_API_LEDGER_RETENTION_DAYS."
        ),
    ] = None,
) -> None:
    """Delete the requests recorded more than OLDER_THAN days ago with what they disclosed, and the
    distinct-patient windows past the extraction window; in batches, each its own transaction."""
    settings = get_settings()
    days = older_than or settings.ledger_retention_days
    with _session(snapshot=False) as session:
        purged = retention.purge(
            session,
            timedelta(days=days),
            timedelta(days=settings.extraction_long_window_days),
            short_window=timedelta(hours=settings.extraction_window_hours),
        )
    if purged.months_dropped:
        typer.echo(
            f"dropped the monthly partitions {', '.join(purged.months_dropped)} "
            f"(about {purged.rows_in_months_dropped} row(s)), wholly past {days} days"
        )
    typer.echo(
        f"deleted {purged.access_records} access record(s) and their {purged.disclosures} disclosure row(s), "
        f"recorded before {purged.ledger_cutoff.isoformat(timespec='seconds')} ({days} days)"
    )
    typer.echo(
        f"deleted {purged.patient_disclosures} patient window row(s) past the "
        f"{settings.extraction_long_window_days}-day extraction window"
    )


@ledger_app.command("partitions")
def create_partitions(
    ahead: Annotated[int, typer.Option(min=0, help="Months ahead of this one to create.")] = partitions.MONTHS_AHEAD,
) -> None:
    """PostgreSQL: create the ledger's monthly partitions of this month and the next AHEAD ones, where missing
    (`ledger purge` does it too); list them. SQLite has none."""
    with _session(snapshot=False) as session:
        connection = session.connection()
        if not partitions.is_partitioned(connection):
            typer.echo("this database does not partition the ledger (SQLite): nothing to do")
            return
        created = partitions.create_ahead(connection, utcnow(), ahead)
        session.commit()
        typer.echo(f"created {len(created)} partition(s){': ' + ', '.join(created) if created else ''}")
        for table in partitions.PARTITIONED:
            names = [month.name for month in partitions.months(session.connection(), table)]
            typer.echo(f"{table}: {', '.join(names)}")
