"""Configuration, read once from `PARTNER_API_*` environment variables."""

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PARTNER_API_", env_file=".env", extra="ignore")

    database_url: str = Field(
        default="sqlite:///partner_api.db",
        description="SQLAlchemy URL; sqlite:/// (embedded default) or postgresql://.",
    )
    host: str = "127.0.0.1"
    port: int = 8000
    graphiql: bool = Field(default=True, description="Serve GraphiQL on GET /graphql.")
    demo_keys_file: Path = Field(
        default=Path("demo-keys.json"), description="Where `seed` writes the demo partners' keys."
    )
    log_level: str = "info"
    # Shape limits, checked before execution (cached with the parsed document).
    max_body_bytes: int = Field(default=64 * 1024, description="Largest accepted request body.")
    max_query_depth: int = Field(default=10, description="Deepest field nesting.")
    max_aliases: int = Field(default=20, description="Aliases per document.")
    max_tokens: int = Field(default=3000, description="Lexical tokens per document.")
    max_directives_per_field: int = Field(default=2, description="Directives on one field (@skip/@include).")
    # Cost and budgets, checked with the variables of each request.
    max_query_cost: int = Field(default=1000, description="Most points one operation may cost.")
    budget_capacity: int = Field(default=2000, description="Points a partner's bucket holds (per-partner override).")
    budget_refill_per_second: float = Field(default=100.0, description="Points restored per second.")
    extraction_window_hours: int = Field(default=24, description="Rolling window of the distinct-patient budget.")
    extraction_floor: int = Field(default=50, description="Distinct patients always allowed per practice and window.")
    extraction_activity_factor: float = Field(
        default=2.0, description="Default limit: this many times the patients seen at the practice in a week."
    )
    ledger_retention_days: int = Field(
        default=400, ge=1, description="Days the access ledger is kept; `partner-api ledger purge` deletes older requests."
    )
    secret_key: str = Field(
        default="",
        description="Signs paging cursors. Set the same value on every worker; empty: random per process.",
    )


@lru_cache
def get_settings() -> Settings:
    return Settings()
