"""Settings shared by every service, read from ``TUSK_*`` environment variables.

Each service subclasses :class:`CommonSettings` with its own fields. Nothing else in the code
base reads ``os.environ``: bad configuration fails at start-up with the variable's name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "tusk"


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TUSK_", extra="ignore", frozen=True)

    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Where the embedded defaults keep the SQLite database and object files.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy async URL: postgresql+asyncpg://… or sqlite+aiosqlite:///…; "
        "default: SQLite under the data directory.",
    )
    object_store_url: str | None = Field(
        default=None,
        description="file:///dir or s3://bucket[/prefix]; default: a directory under data_dir.",
    )
    s3_endpoint_url: str | None = Field(default=None, description="S3 endpoint (non-AWS servers).")
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    kafka_bootstrap: str | None = Field(
        default=None, description="host:port,… of Kafka; unset means the in-process MemoryBus."
    )
    kafka_partitions: int = Field(
        default=3, ge=1, description="Partitions of the topics tusk creates when they are missing."
    )
    kafka_replication_factor: int = Field(
        default=1, ge=1, description="Replicas of the topics tusk creates (3 on a real cluster)."
    )
    api_tokens: Annotated[frozenset[str], NoDecode] = Field(
        default=frozenset(),
        description="Comma-separated bearer tokens of administrators (operators and the "
        "services themselves); when set, every API request needs a token: one of these, or one "
        "made with `tusk auth token create`.",
    )
    auth_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        description="How long a service keeps what the repo service said about a token: a "
        "revoked token may work this long on the other services.",
    )
    auth_metrics_public: bool = Field(
        default=False,
        description="Serve /metrics without a token (it names models, pipelines and commits).",
    )
    auth_docs_public: bool = Field(
        default=True, description="Serve /docs and /openapi.json without a token."
    )
    migrate_on_start: bool = Field(
        default=True, description="Apply database migrations when a service starts."
    )
    max_request_bytes: int = Field(
        default=64 << 20,
        ge=1024,
        description="Largest request body a service parses whole (JSON, YAML); 413 above it. "
        "Streamed file uploads have their own limits.",
    )
    body_read_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds a request body may stall between two pieces before the client "
        "is dropped.",
    )
    max_client_concurrency: int = Field(
        default=256,
        ge=1,
        description="Requests one client address may have in flight at once; 429 above it.",
    )
    max_event_bytes: int = Field(
        default=1_000_000,
        ge=1024,
        description="Largest event the outbox relay publishes; a bigger one is parked (see "
        "/v1/outbox/parked) so that the events after it flow. Keep it under the broker's "
        "message.max.bytes.",
    )
    log_level: str = "INFO"
    log_json: bool = False

    @field_validator("data_dir")
    @classmethod
    def _expand_data_dir(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _split_tokens(cls, value: object) -> object:
        if isinstance(value, str):
            tokens = frozenset(t.strip() for t in value.split(",") if t.strip())
            if value and not tokens:
                # Set but empty (" , "): turning auth off here would be a silent surprise.
                raise ValueError(
                    "TUSK_API_TOKENS is set but holds no token; unset it to run without "
                    "authentication, or give at least one token"
                )
            return tokens
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(
            ("postgresql+asyncpg://", "sqlite+aiosqlite://")
        ):
            raise ValueError(
                "TUSK_DATABASE_URL must start with postgresql+asyncpg:// or sqlite+aiosqlite://"
            )
        return value

    @field_validator("object_store_url")
    @classmethod
    def _check_object_store_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("file://", "s3://")):
            raise ValueError("TUSK_OBJECT_STORE_URL must start with file:// or s3://")
        return value

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'tusk.db'}"

    @property
    def resolved_object_store_url(self) -> str:
        return self.object_store_url or (self.data_dir / "objects").as_uri()
