"""The `partner-api client …`, `partner-api oauth …` and `partner-api partner require-tokens`
commands: thin wrappers over api/operators/oauth_clients.py."""

from __future__ import annotations

from typing import Annotated

import typer

from api.data.models import KeyMode
from api.operators import oauth_clients
from api.operators.account_commands import _session, key_state, partner_app
from api.settings import get_settings

__all__ = ["client_app", "oauth_app"]

client_app = typer.Typer(no_args_is_help=True, help="Partners' OAuth clients (private_key_jwt) and their keys.")
oauth_app = typer.Typer(no_args_is_help=True, help="The server's OAuth signing keys.")

JwksFile = Annotated[str | None, typer.Option("--jwks", help="A JSON file holding the client's public JWKS.")]
JwksUrl = Annotated[str | None, typer.Option("--jwks-url", help="A URL serving it (read now, never by requests).")]


def _keys(keys: oauth_clients.ClientKeys) -> str:
    return f"{keys.client_id} of {keys.partner}, live keys: {', '.join(keys.kids) or '-'}"


@client_app.command("register")
def client_register(
    partner: str,
    jwks: JwksFile = None,
    jwks_url: JwksUrl = None,
    mode: Annotated[
        KeyMode, typer.Option(help="trusted: only the partner's registered documents; open: any document.")
    ] = KeyMode.TRUSTED,
) -> None:
    """Register a client of the partner with its public keys; prints its client id (the assertions' iss and sub)."""
    with _session() as session:
        document = oauth_clients.read_jwks(jwks, jwks_url)
        keys = oauth_clients.register_client(session, partner, document, jwks_url, mode)
    typer.echo(f"registered {mode.value} {_keys(keys)}")


@client_app.command("add-keys")
def client_add_keys(client_id: str, jwks: JwksFile = None, jwks_url: JwksUrl = None) -> None:
    """Add new keys to a client (rotation): the new kids live beside the old ones until retired."""
    with _session() as session:
        keys = oauth_clients.add_client_keys(session, client_id, oauth_clients.read_jwks(jwks, jwks_url))
    typer.echo(f"added keys: {_keys(keys)}")


@client_app.command("retire-key")
def client_retire_key(client_id: str, kid: str) -> None:
    """Retire one key of a client: its assertions are refused from the next token request on."""
    with _session() as session:
        keys = oauth_clients.retire_client_key(session, client_id, kid)
    typer.echo(f"retired {kid}: {_keys(keys)}")


@client_app.command("revoke")
def client_revoke(client_id: str) -> None:
    """Revoke a client: no more tokens, and its unexpired tokens are refused from the next request on."""
    with _session() as session:
        oauth_clients.revoke_client(session, client_id)
    typer.echo(f"revoked {client_id}")


@client_app.command("list")
def client_list(partner: str) -> None:
    """A partner's clients: client id, state, credential prefix (the ledger's key) and live kids."""
    with _session() as session:
        for client, key, kids in oauth_clients.list_clients(session, partner):
            typer.echo(
                f"{client.client_id}  {key_state(key):11}  key {key.prefix}  last used {key.last_used_at or '-'}  "
                f"kids {', '.join(kids) or '-'}"
            )


@partner_app.command("require-tokens")
def partner_require_tokens(
    name: str,
    required: Annotated[bool, typer.Option("--on/--off", help="Refuse the partner's API keys.")] = True,
) -> None:
    """Serve the partner only with OAuth access tokens: its API keys are refused from their next request on."""
    with _session() as session:
        partner = oauth_clients.set_tokens_required(session, name, required)
        refused = required or partner.dpop_required
    said = "access tokens only, API keys refused" if refused else "API keys accepted"
    why = " (DPoP is required: `partner require-dpop --off` first)" if refused and not required else ""
    typer.echo(f"{name}: {said}{why}")


@partner_app.command("require-dpop")
def partner_require_dpop(
    name: str,
    required: Annotated[bool, typer.Option("--on/--off", help="Refuse the partner's bearer access tokens.")] = True,
) -> None:
    """Issue and serve the partner's access tokens only bound to a DPoP key (RFC 9449): a token request
    without a proof is refused, and bearer tokens already issued are refused from their next request
    on; its API keys too, whatever `require-tokens` says (`--off` leaves that as it is)."""
    with _session() as session:
        partner = oauth_clients.set_dpop_required(session, name, required)
        keys = "API keys refused" if partner.tokens_required or required else "API keys accepted"
    said = "access tokens bound to a DPoP key only" if required else "bearer access tokens accepted"
    typer.echo(f"{name}: {said}, {keys}")


@oauth_app.command("rotate-signing-key")
def oauth_rotate_signing_key() -> None:
    """A new key signs access tokens from now on; the older ones verify until retired."""
    with _session() as session:
        kid = oauth_clients.rotate_signing_key(session, get_settings())
    typer.echo(f"new signing key {kid}")


@oauth_app.command("retire-signing-key")
def oauth_retire_signing_key(kid: str) -> None:
    """Retire a signing key: the tokens it signed are refused."""
    with _session() as session:
        oauth_clients.retire_signing_key(session, kid)
    typer.echo(f"retired signing key {kid}")
