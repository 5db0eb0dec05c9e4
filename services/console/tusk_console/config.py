from __future__ import annotations

from pydantic import Field

from tusk.settings import CommonSettings


class ConsoleSettings(CommonSettings):
    """The console reads the other services' public APIs like any client; ``TUSK_API_TOKENS``
    (shared with them) makes it ask each user for a token, which it passes on as theirs."""

    host: str = "127.0.0.1"
    port: int = Field(default=8084, alias="TUSK_CONSOLE_PORT")
    repo_url: str = Field(default="http://127.0.0.1:8081", alias="TUSK_REPO_URL")
    trigger_url: str = Field(default="http://127.0.0.1:8082", alias="TUSK_TRIGGER_URL")
    scheduler_url: str = Field(default="http://127.0.0.1:8083", alias="TUSK_SCHEDULER_URL")
    inference_url: str = Field(default="http://127.0.0.1:8080", alias="TUSK_INFERENCE_URL")
    page_size: int = Field(
        default=100,
        ge=10,
        le=1000,
        alias="TUSK_CONSOLE_PAGE_SIZE",
        description="Rows per page in file listings, CSV previews, commit and job lists.",
    )
    preview_bytes: int = Field(
        default=1 << 20,
        ge=1024,
        alias="TUSK_CONSOLE_PREVIEW_BYTES",
        description="How much of a text or JSON file a preview shows; the rest is downloadable.",
    )
    secure_cookie: bool = Field(
        default=False,
        alias="TUSK_CONSOLE_SECURE_COOKIE",
        description="Send the token cookie over HTTPS only (set behind a TLS proxy).",
    )
