"""The contexts file, as ``tusk context`` writes it: named deployments (see
:mod:`tusk.client.config`, which reads the current one for every client)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tusk.client.config import SERVICE_URL_FIELDS, check_url, contexts_path
from tusk.errors import InvalidArgument, NotFound


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
        return check_url(value)

    @classmethod
    def from_base_url(cls, base_url: str, token: str | None = None) -> Context:
        """A deployment behind one host: the default ports on that host."""
        checked = check_url(base_url)
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
        self.path = contexts_path(config_dir)

    def load(self) -> ContextFile:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return ContextFile()
        except OSError as e:
            raise InvalidArgument(f"cannot read {self.path}: {e.strerror}") from None
        return self.parse(text)

    def parse(self, text: str) -> ContextFile:
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
