"""Where clients find the services: ``TUSK_*`` variables over the current context over defaults.

A *context* is a named set of service addresses (and optionally a token) kept in
``$TUSK_CONFIG_DIR/contexts.json`` (default ``~/.config/tusk``), so that pointing the CLI or
the SDK at a deployment takes ``tusk context use NAME`` rather than eight variables. An
environment variable still wins over the context, so one command can be redirected.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from tusk.errors import InvalidArgument, NotFound

DEFAULT_REPO_URL = "http://127.0.0.1:8081"
DEFAULT_TRIGGER_URL = "http://127.0.0.1:8082"
DEFAULT_SCHEDULER_URL = "http://127.0.0.1:8083"
DEFAULT_INFERENCE_URL = "http://127.0.0.1:8080"
DEFAULT_S3_GATEWAY_URL = "http://127.0.0.1:8085"

SERVICE_URL_FIELDS = ("repo_url", "trigger_url", "scheduler_url", "inference_url", "s3_url")


def default_config_dir() -> Path:
    return Path.home() / ".config" / "tusk"


def _check_url(value: str | None) -> str | None:
    if value is not None and not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value.rstrip("/") if value else value


class Context(BaseModel):
    """One deployment's addresses; fields left unset fall back to the defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    repo_url: str | None = None
    trigger_url: str | None = None
    scheduler_url: str | None = None
    inference_url: str | None = None
    s3_url: str | None = None
    token: str | None = None

    @field_validator(*SERVICE_URL_FIELDS)
    @classmethod
    def _check_urls(cls, value: str | None) -> str | None:
        return _check_url(value)

    @classmethod
    def from_base_url(cls, base_url: str, token: str | None = None) -> Context:
        """A deployment behind one host: the default ports on that host."""
        checked = _check_url(base_url)
        assert checked is not None
        scheme, _, host = checked.partition("://")
        host = host.split("/", 1)[0].rsplit(":", 1)[0] if "]" not in host else host
        return cls(
            repo_url=f"{scheme}://{host}:8081",
            trigger_url=f"{scheme}://{host}:8082",
            scheduler_url=f"{scheme}://{host}:8083",
            inference_url=f"{scheme}://{host}:8080",
            s3_url=f"{scheme}://{host}:8085",
            token=token,
        )


class ContextFile(BaseModel):
    model_config = ConfigDict(extra="ignore")

    current: str | None = None
    contexts: dict[str, Context] = Field(default_factory=dict)


class ContextStore:
    """The contexts file: read, changed and written back whole (atomically, by rename)."""

    def __init__(self, config_dir: Path) -> None:
        self.path = config_dir.expanduser() / "contexts.json"

    def load(self) -> ContextFile:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return ContextFile()
        except OSError as e:
            raise InvalidArgument(f"cannot read {self.path}: {e.strerror}") from None
        try:
            return ContextFile.model_validate_json(text)
        except ValidationError as e:
            raise InvalidArgument(
                f"{self.path} is not a valid contexts file ({e.errors()[0]['msg']}); fix or "
                "delete it"
            ) from None

    def save(self, data: ContextFile) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # The file may hold tokens: readable by its owner only.
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".contexts-")
        try:
            with os.fdopen(fd, "w") as out:
                out.write(data.model_dump_json(indent=2, exclude_none=True) + "\n")
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def set(self, name: str, context: Context, *, use: bool = False) -> None:
        data = self.load()
        data.contexts[name] = context
        if use or data.current is None:
            data.current = name
        self.save(data)

    def use(self, name: str) -> None:
        data = self.load()
        if name not in data.contexts:
            raise NotFound(f"no context {name!r}; `tusk context list` shows them")
        data.current = name
        self.save(data)

    def remove(self, name: str) -> None:
        data = self.load()
        if data.contexts.pop(name, None) is None:
            raise NotFound(f"no context {name!r}; `tusk context list` shows them")
        if data.current == name:
            data.current = None
        self.save(data)

    def get(self, name: str) -> Context:
        data = self.load()
        if name not in data.contexts:
            raise NotFound(f"no context {name!r}; `tusk context list` shows them")
        return data.contexts[name]


class _ContextSource(PydanticBaseSettingsSource):
    """The current context's values, below the environment and above the defaults."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ answers for all fields at once

    def __call__(self) -> dict[str, Any]:
        # What the sources above this one (arguments, environment) said.
        given = self.current_state
        store = ContextStore(Path(given.get("config_dir") or default_config_dir()))
        data = store.load()
        name = given.get("context") or data.current
        if name is None:
            return {}
        if name not in data.contexts:
            raise InvalidArgument(
                f"TUSK_CONTEXT names {name!r}, which is not in {store.path}; "
                "`tusk context list` shows the contexts"
            )
        values = data.contexts[name].model_dump(exclude_none=True)
        return {**values, "context": name}


class ClientSettings(BaseSettings):
    """Where the CLI and the SDK find the services; ``TUSK_*`` environment variables, else the
    current context (``tusk context use``), else the local defaults."""

    model_config = SettingsConfigDict(env_prefix="TUSK_", extra="ignore", frozen=True)

    config_dir: Path = Field(
        default_factory=default_config_dir, description="Where contexts.json is kept."
    )
    context: str | None = Field(default=None, description="The context in use, if any.")
    repo_url: str = Field(default=DEFAULT_REPO_URL, description="The repo service.")
    trigger_url: str = Field(
        default=DEFAULT_TRIGGER_URL, description="The trigger service (pipelines, jobs)."
    )
    scheduler_url: str = Field(
        default=DEFAULT_SCHEDULER_URL, description="The scheduler (datums, logs)."
    )
    inference_url: str = Field(default=DEFAULT_INFERENCE_URL, description="Model serving.")
    s3_url: str = Field(default=DEFAULT_S3_GATEWAY_URL, description="The S3 gateway.")
    token: str | None = Field(default=None, description="Bearer token for the services.")
    timeout: float = Field(default=60.0, gt=0, description="Seconds to wait for an answer.")

    @field_validator(*SERVICE_URL_FIELDS)
    @classmethod
    def _check_urls(cls, value: str) -> str:
        checked = _check_url(value)
        assert checked is not None
        return checked

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _ContextSource(settings_cls), file_secret_settings)
