"""Configuration, read once from `PARTNER_API_*` environment variables."""

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from standardwebhooks import Webhook

MAX_RETENTION_DAYS = 36500  # a century: far enough past it, the ledger's cutoff falls before year 1


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PARTNER_API_", env_file=".env", extra="ignore")

    database_url: str = Field(
        default="sqlite:///partner_api.db",
        description="SQLAlchemy URL; sqlite:/// (embedded default) or postgresql://.",
    )
    host: str = "127.0.0.1"
    port: int = 8000
    graphiql: bool = Field(
        default=False, description="Serve GraphiQL on GET /graphql (`demo` and `serve --graphiql` turn it on)."
    )
    policy_dir: Path | None = Field(
        default=None,
        description="Directory of the .polar policy files (default: the policy shipped in authz/); "
        "`partner-api policy reload` or SIGHUP loads its changes once they pass `policy check`.",
    )
    demo_keys_file: Path = Field(
        default=Path("demo-keys.json"), description="Where `seed` writes the demo partners' keys."
    )
    log_level: str = "info"
    # Shape limits, checked before execution (cached with the parsed document).
    max_body_bytes: int = Field(default=64 * 1024, description="Largest accepted request body.")
    max_query_depth: int = Field(default=10, description="Deepest field nesting.")
    max_aliases: int = Field(default=20, description="Aliases per operation, fragments expanded.")
    max_selections: int = Field(default=500, ge=1, description="Fields one operation selects, fragments expanded.")
    max_field_repeats: int = Field(
        default=20, ge=1, description="Fields merged into one response field, fragments expanded."
    )
    max_operations: int = Field(default=20, ge=1, description="Operations in one document (one of which runs).")
    max_fragments: int = Field(
        default=32, ge=1, description="Fragments one document defines (validation compares them pairwise)."
    )
    max_tokens: int = Field(default=3000, description="Lexical tokens per document.")
    max_directives_per_field: int = Field(default=2, description="Directives on one field (@skip/@include).")
    # Cost and budgets, checked with the variables of each request.
    max_query_cost: int = Field(default=1000, description="Most points one operation may cost.")
    budget_capacity: int = Field(default=2000, description="Points a partner's bucket holds (per-partner override).")
    budget_refill_per_second: float = Field(default=100.0, description="Points restored per second.")
    # The distinct-patient budget (api.protection.extraction); each default's reasoning is in the README.
    extraction_window_hours: int = Field(default=24, ge=1, description="Short window of the distinct-patient budget.")
    extraction_long_window_days: int = Field(
        default=30, ge=1, description="Long window of the distinct-patient budget."
    )
    extraction_floor: int = Field(
        default=50, ge=1, description="Distinct patients always allowed per practice and short window."
    )
    extraction_activity_factor: float = Field(
        default=1.5,
        ge=0,
        description="Short-window limit: this many times the practice's weekly patients (its baseline).",
    )
    extraction_long_floor: int = Field(
        default=150, ge=1, description="Distinct patients always allowed per practice and long window."
    )
    extraction_long_factor: float = Field(
        default=10.0, ge=0, description="Long-window limit: this many times the practice's weekly patients."
    )
    extraction_daily_cap: int = Field(
        default=1500, ge=1, description="Most the computed short-window limit may reach (per-grant override)."
    )
    extraction_long_cap: int = Field(
        default=8000, ge=1, description="Most the computed long-window limit may reach (per-grant override)."
    )
    extraction_baseline_weeks_back: int = Field(default=4, ge=0, description="Past weeks the baseline measures.")
    extraction_baseline_weeks_ahead: int = Field(default=2, ge=0, description="Coming weeks the baseline measures.")
    extraction_baseline_max_growth: float = Field(
        default=0.25,
        ge=0,
        description="Most the baseline may grow from one daily computation to the next (0.25: +25 %).",
    )
    extraction_warning_fractions: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [0.5, 0.8],
        description="Fractions of each budget that raise a warning, comma-separated.",
    )
    extraction_churn_cancellations: int = Field(
        default=20,
        ge=1,
        description="A partner's own bookings cancelled soon after booking, per practice and day, that raise a "
        "churn alert.",
    )
    extraction_churn_minutes: int = Field(
        default=60, ge=1, description="A cancellation this soon after its booking counts as churn."
    )
    # The change limit (api.protection.disruption): appointments a partner did not book, cancelled or moved.
    disruption_floor: int = Field(
        default=20, ge=1, description="Appointments a partner did not book it may always change per practice and day."
    )
    disruption_activity_factor: float = Field(
        default=0.25,
        ge=0,
        description="Daily change limit: this many times the practice's weekly patients (its baseline).",
    )
    # The operators' webhook (api.ledger.webhook): Standard Webhooks signature.
    alert_webhook_url: str = Field(
        default="", description="Where every alert is POSTed; empty: kept in the outbox, listed only."
    )
    alert_webhook_secret: str = Field(
        default="", description="Standard Webhooks secret (`whsec_` + base64) that signs each body with HMAC-SHA256."
    )
    alert_webhook_timeout_seconds: float = Field(default=5.0, gt=0, description="Longest one delivery attempt waits.")
    alert_webhook_poll_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How often the app's sender looks for due deliveries when not woken by a new alert.",
    )
    alert_webhook_max_backoff_seconds: float = Field(
        default=3600.0, gt=0, description="Longest wait between two attempts."
    )
    ledger_retention_days: int = Field(
        default=400,
        ge=1,
        le=MAX_RETENTION_DAYS,
        description="Days the access ledger is kept; `partner-api ledger purge` deletes older requests.",
    )
    max_concurrent_requests_per_partner: int = Field(
        default=4,
        ge=1,
        description="Requests of one partner (all its keys) running at once in each worker; the next ones wait.",
    )
    max_concurrent_requests_per_worker: int = Field(
        default=8,
        ge=1,
        description="Requests one worker runs at once; while several partners wait, they take turns (fair_turns).",
    )
    partner_pool_share: float = Field(
        default=0.4,
        gt=0,
        le=1,
        description="Most of a worker's database connections one partner's requests may hold at once.",
    )
    # Before authentication (api.protection.address_limiter): a flood of bad keys costs no database work.
    failed_requests_per_address: int = Field(
        default=30, ge=1, description="Unauthenticated requests one client address may make per window."
    )
    failed_requests_window_seconds: float = Field(
        default=60.0, gt=0, description="The window of `failed_requests_per_address`, from the first failure."
    )
    failed_requests_tracked_addresses: int = Field(
        default=100_000, ge=1, description="Client addresses counted at once per worker (the memory bound)."
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated networks of the reverse proxies whose X-Forwarded-For names the client; "
        "empty: the TCP peer is the client.",
    )
    # Timeouts: a request that runs past either is stopped and answered COST_LIMIT_EXCEEDED, reason TIMEOUT.
    compiled_plans: bool = Field(
        default=True,
        description="Run registered documents of the supported shapes through their compiled plan (api/compiled/); "
        "off: every document runs on the general executor.",
    )
    principal_cache: bool = Field(
        default=True,
        description="Keep each worker's authenticated keys between requests, invalidated at once by the database "
        "(api/identity/principal_cache.py); off: every request looks its key up.",
    )
    request_timeout_seconds: float = Field(default=10.0, gt=0, description="Longest a GraphQL operation may run.")
    statement_timeout_seconds: float = Field(
        default=5.0, ge=0, description="Longest one SQL statement may run (PostgreSQL statement_timeout; 0: none)."
    )
    worker_timeout_seconds: int = Field(
        default=30, ge=1, description="A worker whose event loop is stuck this long is killed and replaced (serve)."
    )
    max_head_bytes: int = Field(
        default=32 * 1024,
        ge=8 * 1024,  # a head is counted slice by slice of 8 KiB (api/http/bounded_head.py)
        description="Largest request line and headers together, or a chunked body's framing (size lines and "
        "trailers, beyond 16 bytes per byte of data) (431 above; api/http/bounded_head.py).",
    )
    head_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="Longest a client may take to send a request's line and headers, from their first byte, or from "
        "the connection for its first request (408).",
    )
    body_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="Longest a client may take to send a request's body, once its headers are in (408 after).",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated origins whose browser pages may call the API (CORS); empty: none.",
    )
    tracing_otlp_endpoint: str = Field(
        default="",
        description="OTLP/HTTP traces endpoint (e.g. http://collector:4318/v1/traces); empty: no tracing.",
    )
    secret_key: str = Field(
        default="",
        description="Seals paging cursors and the access tokens' signing keys. Set the same value on every worker; "
        "empty: random per process (`serve` then refuses several workers and PostgreSQL).",
    )
    secret_key_previous: str = Field(
        default="",
        description="The key before a rotation: cursors and signing keys it sealed are still opened while it is set "
        "(grace period).",
    )
    oauth_issuer: str = Field(
        default="",
        description="The OAuth issuer: the server's public base URL (`https://api.example.org`), which client "
        "assertions name in `aud` (its `/oauth/token`); empty: the request's URL when it names this server (a "
        "loopback name or the address reached, and its port), else that address. Set it in production.",
    )
    access_token_seconds: int = Field(default=300, ge=30, le=3600, description="Lifetime of an access token.")

    @field_validator("extraction_warning_fractions", mode="before")
    @classmethod
    def _fractions(cls, value: object) -> object:
        return [float(f) for f in value.split(",") if f.strip()] if isinstance(value, str) else value

    @field_validator("extraction_warning_fractions")
    @classmethod
    def _between_zero_and_one(cls, value: list[float]) -> list[float]:
        if any(not 0 < f < 1 for f in value):
            raise ValueError("each warning fraction is between 0 and 1 (exclusive)")
        return sorted(set(value))

    @model_validator(mode="after")
    def _webhook_is_signed(self) -> "Settings":
        # Deny by default: an unsigned alert could be forged by anyone who can reach the receiver.
        if self.alert_webhook_url and not self.alert_webhook_secret:
            raise ValueError("PARTNER_API_ALERT_WEBHOOK_URL needs PARTNER_API_ALERT_WEBHOOK_SECRET")
        if self.alert_webhook_secret:
            try:
                Webhook(self.alert_webhook_secret)
            except Exception as error:
                raise ValueError("PARTNER_API_ALERT_WEBHOOK_SECRET is `whsec_` followed by base64") from error
        return self

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for network in value:
            ipaddress.ip_network(network, strict=False)  # a ValueError names the bad one
        return value

    @field_validator("cors_origins", "trusted_proxies", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return [origin.strip() for origin in value.split(",") if origin.strip()] if isinstance(value, str) else value


@lru_cache
def get_settings() -> Settings:
    return Settings()
