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
    secret_key: str = Field(
        default="",
        description="Signs paging cursors. Set the same value on every worker; empty: random per process.",
    )


@lru_cache
def get_settings() -> Settings:
    return Settings()
