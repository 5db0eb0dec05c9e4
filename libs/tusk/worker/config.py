"""The worker's settings: ``TUSK_*`` environment variables, checked at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tusk.errors import InvalidArgument

DEFAULT_REPO_URL = "http://127.0.0.1:8081"


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TUSK_", extra="ignore", frozen=True)

    repo_url: str = Field(default=DEFAULT_REPO_URL, description="The repo service.")
    token: str | None = Field(default=None, description="Bearer token for the repo service.")
    timeout: float = Field(default=60.0, gt=0, description="Seconds to wait for an answer.")
    pfs_root: Path | None = Field(
        default=None,
        description="Stage every datum at exactly this directory (e.g. /pfs, for images whose "
        "commands name /pfs literally); it is emptied before each datum. Unset: each datum gets "
        "a fresh directory under TUSK_WORKER_SCRATCH, so workers sharing a machine never meet.",
    )
    worker_scratch: Path | None = Field(
        default=None,
        description="Where the per-datum directories are made when TUSK_PFS_ROOT is unset "
        "(default: the system's temporary directory).",
    )
    worker_kill_grace: float = Field(
        default=5.0,
        ge=0,
        description="Seconds a user process has to exit after SIGTERM (on a datum timeout or a "
        "worker shutdown) before its process group is killed.",
    )
    worker_repo_attempts: int = Field(
        default=8,
        ge=1,
        description="Tries of a request that finds the repo service unreachable, with "
        "exponential backoff (0.25 s doubling to 5 s between tries) before the worker gives up.",
    )
    worker_sandbox: Literal["auto", "bwrap", "off"] = Field(
        default="auto",
        description="How datum commands run: `bwrap` each in its own mount namespace with its "
        "datum at /pfs (bubblewrap; the worker fails where it cannot), `auto` the same where "
        "bubblewrap works and unwrapped (with a warning) elsewhere, `off` unwrapped.",
    )
    worker_image_root: Path | None = Field(
        default=None,
        description="Local runner, in the sandbox: a directory standing in for the pipeline "
        "image's root, each of its entries shown read-only at /<entry>, as a Dockerfile's "
        "`COPY edges.py /` puts it (for specs that run `python3 /edges.py`). Unset: none.",
    )
    worker_secrets_dir: Path | None = Field(
        default=None,
        description="Where transform.secrets are read: <dir>/<secret name>/<key> files, the "
        "layout of a Kubernetes secret volume. Unset: the platform provides them (the "
        "Kubernetes runner); a datum whose secrets are missing fails, naming them.",
    )
    worker_listen_host: str = Field(
        default="0.0.0.0",  # noqa: S104 (a pod's own address; the runner sets the pod IP)
        description="`tusk-worker --listen` (a warm pod): the address it takes its assignment "
        "on (the Kubernetes runner sets the pod's IP).",
    )
    worker_listen_port: int | None = Field(
        default=None, ge=1, le=65535, description="`tusk-worker --listen`: the port."
    )
    worker_assignment_key: str | None = Field(
        default=None,
        description="`tusk-worker --listen`: the key an assignment must carry (set per pod "
        "by the runner; hidden from the pipeline's command).",
    )
    log_level: str = "INFO"
    log_json: bool = False

    @field_validator("repo_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @field_validator("pfs_root", "worker_scratch", "worker_image_root", "worker_secrets_dir")
    @classmethod
    def _check_absolute(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_absolute():
            raise ValueError("must be an absolute path")
        return value


def load_settings() -> WorkerSettings:
    """The settings, or :class:`InvalidArgument` naming each variable that is wrong."""
    try:
        return WorkerSettings()
    except ValidationError as e:
        problems = [
            f"TUSK_{str(item['loc'][0]).upper() if item['loc'] else '?'}: {item['msg']}"
            for item in e.errors()
        ]
        raise InvalidArgument("invalid configuration: " + "; ".join(problems)) from None
