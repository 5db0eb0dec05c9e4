from __future__ import annotations

from pydantic import Field

from tusk.settings import CommonSettings


class TriggerSettings(CommonSettings):
    host: str = "127.0.0.1"
    port: int = Field(default=8082, alias="TUSK_TRIGGER_PORT")
    repo_url: str = Field(
        default="http://127.0.0.1:8081",
        alias="TUSK_REPO_URL",
        description="The repo service, for input heads and the repos pipelines own.",
    )
    token: str | None = Field(
        default=None, alias="TUSK_TOKEN", description="Bearer token for the repo API."
    )
    cron_interval: float = Field(
        default=1.0,
        gt=0,
        alias="TUSK_TRIGGER_CRON_INTERVAL",
        description="Seconds between looks at the cron schedules.",
    )
