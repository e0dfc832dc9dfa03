"""Operator commands: `partner-api partner|key|grant ...`, thin wrappers over `api.operators.accounts`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, TypeVar

import typer
from sqlalchemy.orm import Session

from api import reading_horizon
from api.data.database import make_sync_engine
from api.data.models import Grant, KeyMode, PartnerKey, PartnerStatus
from api.operators import accounts as operators
from api.reading_horizon import MAX_DAYS
from api.scopes import Scope, parse_scopes
from api.settings import get_settings

partner_app = typer.Typer(no_args_is_help=True, help="Partners (software vendors).")
key_app = typer.Typer(no_args_is_help=True, help="Partners' API keys.")
grant_app = typer.Typer(no_args_is_help=True, help="Practices' grants to partners.")

T = TypeVar("T")
ScopesOption = Annotated[
    str, typer.Option(help=f"Comma-separated scopes among: {', '.join(s.value for s in Scope)}.")
]
DaysBackOption = Annotated[
    int | None,
    typer.Option(help=f"Reading horizon: days before today whose patients' identity, contact and reason are readable "
                      f"(0 to {MAX_DAYS}; default {reading_horizon.DEFAULT.days_back} for a new grant)."),
]
DaysAheadOption = Annotated[
    int | None,
    typer.Option(
        help=f"Reading horizon: days after today (0 to {MAX_DAYS}; default {reading_horizon.DEFAULT.days_ahead} "
        f"for a new grant)."
    ),
]


@contextmanager
def _session() -> Iterator[Session]:
    """One transaction per command; an `OperatorError` becomes a clean exit 1 with its message."""
    engine = make_sync_engine(get_settings().database_url)
    try:
        with Session(engine, expire_on_commit=False) as session, session.begin():
            yield session
    except operators.OperatorError as error:
        typer.secho(f"error: {error}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()


def _parse(parser: Callable[[str], T], text: str, what: str) -> T:
    try:
        return parser(text)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint=what) from None


def _when(text: str | None, option: str = "--expires") -> datetime | None:
    if text is None:
        return None
    value = _parse(datetime.fromisoformat, text, option)
    if value.tzinfo is None:
        raise typer.BadParameter("give a time zone, e.g. 2027-06-30T00:00:00+02:00", param_hint=option)
    try:
        return value.astimezone(UTC)  # 9999-12-31T23:59:59-01:00 is past the calendar's end in UTC
    except OverflowError:
        raise typer.BadParameter("out of the calendar's range once in UTC", param_hint=option) from None


def _describe(grant: Grant) -> str:
    history = f", history until {grant.history_until:%Y-%m-%d %H:%M} UTC" if grant.history_until else ""
    limits = ", ".join(f"{name} {value}" for name in operators.GRANT_LIMITS if (value := getattr(grant, name)))
    return (
        f"{', '.join(sorted(grant.scopes))} until {grant.expires_at:%Y-%m-%d}; "
        f"reads identity {grant.days_back} day(s) back to {grant.days_ahead} ahead{history}"
        + (f"; limits: {limits}" if limits else "")
    )


@partner_app.command("create")
def partner_create(name: str) -> None:
    """Register a partner (active, with no key and no grant)."""
    with _session() as session:
        partner = operators.create_partner(session, name)
        typer.echo(f"created partner {partner.name} ({partner.public_id})")


@partner_app.command("suspend")
def partner_suspend(name: str) -> None:
    """Refuse every key of the partner from its next request on."""
    with _session() as session:
        operators.set_partner_status(session, name, PartnerStatus.SUSPENDED)
        typer.echo(f"suspended {name}")


@partner_app.command("activate")
def partner_activate(name: str) -> None:
    """Lift a suspension."""
    with _session() as session:
        operators.set_partner_status(session, name, PartnerStatus.ACTIVE)
        typer.echo(f"activated {name}")


@partner_app.command("quarantine")
def partner_quarantine(
    name: str,
    enabled: Annotated[
        bool, typer.Option("--on/--off", help="Quarantine a key at its first distinct-patient refusal.")
    ],
) -> None:
    """Whether a key of the partner is quarantined at its first distinct-patient refusal (on by default)."""
    with _session() as session:
        operators.set_quarantine_on_refusal(session, name, enabled)
        typer.echo(f"quarantine on refusal {'on' if enabled else 'off'} for {name}")


@key_app.command("issue")
def key_issue(
    partner: str,
    label: Annotated[str | None, typer.Option(help="What the key is for.")] = None,
    expires: Annotated[str | None, typer.Option(help="ISO 8601 expiry with time zone.")] = None,
    mode: Annotated[
        KeyMode, typer.Option(help="trusted: only the partner's registered documents; open: any document.")
    ] = KeyMode.TRUSTED,
) -> None:
    """Issue a key. The key is printed once and never stored: hand it over now."""
    with _session() as session:
        key = operators.issue_partner_key(session, partner, label, _when(expires), mode)
    typer.echo(f"{mode.value} key for {key.partner} (prefix {key.prefix}), shown only this once:\n{key.token}")


@key_app.command("mode")
def key_mode(
    prefix: str,
    mode: Annotated[KeyMode, typer.Argument(help="trusted: registered documents only; open: any document.")],
) -> None:
    """Switch a key between trusted and open (from its next request)."""
    with _session() as session:
        operators.set_key_mode(session, prefix, mode)
    typer.echo(f"key {prefix} is now {mode.value}")


def key_state(key: PartnerKey) -> str:
    """A key's (or an OAuth client's credential's) state, as the operators' lists print it."""
    return "revoked" if key.revoked_at else "quarantined" if key.quarantined_at else "active"


@key_app.command("list")
def key_list(partner: str) -> None:
    """A partner's keys: prefix, state and dates (never secrets)."""
    with _session() as session:
        for key in operators.list_keys(session, partner):
            typer.echo(
                f"{key.prefix}  {key_state(key):11}  {key.mode.value:7}  created {key.created_at:%Y-%m-%d}  "
                f"last used {key.last_used_at or '-'}  expires {key.expires_at or '-'}  {key.label or ''}"
            )


@key_app.command("revoke")
def key_revoke(prefix: str) -> None:
    """Revoke a key by its prefix; it is refused from the next request on."""
    with _session() as session:
        key = operators.revoke_key(session, prefix)
        typer.echo(f"revoked key {key.prefix}")


@key_app.command("release")
def key_release(prefix: str) -> None:
    """Release a key quarantined after a distinct-patient refusal; it is served from its next request on."""
    with _session() as session:
        key = operators.release_key(session, prefix)
        typer.echo(f"released key {key.prefix}")


@grant_app.command("add")
def grant_add(
    partner: str,
    practice: str,
    scopes: ScopesOption,
    expires: Annotated[str | None, typer.Option(help="ISO 8601 expiry with time zone (default: in a year).")] = None,
    days_back: DaysBackOption = None,
    days_ahead: DaysAheadOption = None,
) -> None:
    """Record a practice's consent: PARTNER may access PRACTICE (name or prc_ id) with SCOPES, reading
    who patients are only for appointments from DAYS_BACK before today to DAYS_AHEAD after."""
    horizon = (
        reading_horizon.DEFAULT.days_back if days_back is None else days_back,
        reading_horizon.DEFAULT.days_ahead if days_ahead is None else days_ahead,
    )
    with _session() as session:
        grant = operators.grant_practice(
            session, partner, practice, _parse(parse_scopes, scopes, "--scopes"), _when(expires), horizon
        )
        typer.echo(f"granted {grant.public_id}: {_describe(grant)}")


@grant_app.command("change")
def grant_change(
    partner: str,
    practice: str,
    scopes: Annotated[str | None, typer.Option(help="New comma-separated scopes.")] = None,
    expires: Annotated[str | None, typer.Option(help="New ISO 8601 expiry with time zone.")] = None,
    days_back: DaysBackOption = None,
    days_ahead: DaysAheadOption = None,
) -> None:
    """Change the scopes, the expiry or the reading horizon of the live grant between PARTNER and PRACTICE."""
    if scopes is None and expires is None and days_back is None and days_ahead is None:
        raise typer.BadParameter("give --scopes, --expires, --days-back and/or --days-ahead")
    with _session() as session:
        new_scopes = _parse(parse_scopes, scopes, "--scopes") if scopes is not None else None
        grant = operators.change_grant(session, partner, practice, new_scopes, _when(expires), days_back, days_ahead)
        typer.echo(f"grant {grant.public_id}: {_describe(grant)}")


LimitOption = Annotated[str | None, typer.Option(help="A number, or `none` to compute it again.")]


def _limit(text: str, option: str) -> int | None:
    return None if text.strip().lower() == "none" else _parse(int, text, option)


@grant_app.command("limits")
def grant_limits(
    partner: str,
    practice: str,
    patients_per_day: LimitOption = None,
    daily_cap: LimitOption = None,
    monthly_cap: LimitOption = None,
    changes_per_day: LimitOption = None,
) -> None:
    """Set the limits of the live grant between PARTNER and PRACTICE, each replacing the one computed
    from the practice's activity (or bounding it): --patients-per-day the distinct patients per 24 h,
    --daily-cap and --monthly-cap what the computed 24 h and 30-day limits may reach,
    --changes-per-day the appointments it did not book it may cancel or move per 24 h (the
    practice's own software during an absence, say). `none` computes it again."""
    given = {
        "max_patients_per_window": (patients_per_day, "--patients-per-day"),
        "patients_daily_cap": (daily_cap, "--daily-cap"),
        "patients_monthly_cap": (monthly_cap, "--monthly-cap"),
        "max_changes_per_day": (changes_per_day, "--changes-per-day"),
    }
    limits = {name: _limit(text, option) for name, (text, option) in given.items() if text is not None}
    if not limits:
        raise typer.BadParameter("give --patients-per-day, --daily-cap, --monthly-cap and/or --changes-per-day")
    with _session() as session:
        grant = operators.set_grant_limits(session, partner, practice, **limits)
        typer.echo(f"grant {grant.public_id}: {_describe(grant)}")


@grant_app.command("history")
def grant_history(
    partner: str,
    practice: str,
    until: Annotated[
        str | None,
        typer.Option(help="ISO 8601 end, with time zone, of the permission to read history (an initial import)."),
    ] = None,
    withdraw: Annotated[bool, typer.Option("--withdraw", help="End the permission now.")] = False,
) -> None:
    """Let PARTNER read patients' identity, contact and reason outside its reading horizon at PRACTICE
    until UNTIL, as the practice approved (an initial import); every such disclosure is marked
    `history` in the ledger. --withdraw ends it."""
    if (until is None) == (not withdraw):
        raise typer.BadParameter("give --until T or --withdraw")
    with _session() as session:
        grant = operators.allow_history(session, partner, practice, _when(until, "--until"))
        typer.echo(f"grant {grant.public_id}: {_describe(grant)}")


@grant_app.command("revoke")
def grant_revoke(partner: str, practice: str) -> None:
    """Withdraw the practice's consent; effective on the partner's next request."""
    with _session() as session:
        grant = operators.revoke_grant(session, partner, practice)
        typer.echo(f"revoked grant {grant.public_id}")
