"""Configuration, read once from `PARTNER_API_*` environment variables."""

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


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
    max_aliases: int = Field(default=20, description="Aliases per operation, fragments expanded.")
    max_selections: int = Field(default=500, ge=1, description="Fields one operation selects, fragments expanded.")
    max_operations: int = Field(default=20, ge=1, description="Operations in one document (one of which runs).")
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
    max_concurrent_requests_per_key: int = Field(
        default=4, ge=1, description="Requests with one API key running at once in each worker; the next ones wait their turn."
    )
    # Timeouts: a request that runs past either is stopped and answered COST_LIMIT_EXCEEDED, reason TIMEOUT.
    request_timeout_seconds: float = Field(default=10.0, gt=0, description="Longest a GraphQL operation may run.")
    statement_timeout_seconds: float = Field(
        default=5.0, ge=0, description="Longest one SQL statement may run (PostgreSQL statement_timeout; 0: none)."
    )
    worker_timeout_seconds: int = Field(
        default=30, ge=1, description="A worker whose event loop is stuck this long is killed and replaced (serve)."
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated origins whose browser pages may call the API (CORS); empty: none.",
    )
    secret_key: str = Field(
        default="",
        description="Signs paging cursors. Set the same value on every worker; empty: random per process.",
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return [origin.strip() for origin in value.split(",") if origin.strip()] if isinstance(value, str) else value


@lru_cache
def get_settings() -> Settings:
    return Settings()
