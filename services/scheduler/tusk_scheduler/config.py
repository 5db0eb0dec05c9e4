from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from tusk.settings import CommonSettings


class SchedulerSettings(CommonSettings):
    host: str = "127.0.0.1"
    port: int = Field(default=8083, alias="TUSK_SCHEDULER_PORT")
    repo_url: str = Field(
        default="http://127.0.0.1:8081",
        alias="TUSK_REPO_URL",
        description="The repo service: inputs, output commits and meta commits.",
    )
    token: str | None = Field(
        default=None,
        alias="TUSK_TOKEN",
        description="Bearer token for the repo API; workers are given it too.",
    )
    runner: Literal["local"] = Field(
        default="local",
        alias="TUSK_RUNNER",
        description="Where workers run: `local` (subprocesses).",
    )
    workspace_dir: Path | None = Field(
        default=None,
        alias="TUSK_SCHEDULER_WORKSPACE_DIR",
        description="The local runner's scratch space (staged inputs, worker logs); "
        "default: <data dir>/scheduler.",
    )
    worker_command: tuple[str, ...] | None = Field(
        default=None,
        alias="TUSK_SCHEDULER_WORKER_COMMAND",
        description='The worker program as a JSON list, e.g. ["tusk-worker"]; default: the '
        "tusk-worker installed next to this Python.",
    )
    code_dir: Path | None = Field(
        default=None,
        alias="TUSK_SCHEDULER_CODE_DIR",
        description="Local runner: the directory pipeline commands run in (relative paths in "
        "transform.cmd resolve there); default: the directory the scheduler was started in.",
    )
    max_running_jobs: int = Field(
        default=8,
        ge=1,
        alias="TUSK_SCHEDULER_MAX_RUNNING_JOBS",
        description="Jobs executing at once (across pipelines; one per pipeline at a time).",
    )
    poll_interval: float = Field(
        default=0.25,
        gt=0,
        alias="TUSK_SCHEDULER_POLL_INTERVAL",
        description="Seconds between looks at running workers and at their results.",
    )
    progress_interval: float = Field(
        default=2.0,
        gt=0,
        alias="TUSK_SCHEDULER_PROGRESS_INTERVAL",
        description="Least seconds between two job.progress events of a job.",
    )
    shard_attempts: int = Field(
        default=3,
        ge=1,
        alias="TUSK_SCHEDULER_SHARD_ATTEMPTS",
        description="Times a shard whose worker died without results is started again.",
    )
    log_tail_bytes: int = Field(
        default=16 * 1024,
        ge=0,
        alias="TUSK_SCHEDULER_LOG_TAIL_BYTES",
        description="How much of each datum's log the scheduler keeps (the whole log stays "
        "in the job's meta commit).",
    )
    cancel_grace: float = Field(
        default=10.0,
        ge=0,
        alias="TUSK_SCHEDULER_CANCEL_GRACE",
        description="Seconds a worker gets after SIGTERM before SIGKILL (more than the "
        "worker's own TUSK_WORKER_KILL_GRACE, so that it can stop its command first).",
    )

    @property
    def resolved_workspace_dir(self) -> Path:
        return self.workspace_dir or self.data_dir / "scheduler"
