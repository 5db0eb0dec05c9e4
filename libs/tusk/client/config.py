"""Where clients find the services: ``TUSK_*`` variables over the current context over defaults.

A *context* is a named set of service addresses (and optionally a token) kept in
``$TUSK_CONFIG_DIR/contexts.json`` (default ``~/.config/tusk``), so that pointing the CLI or
the SDK at a deployment takes ``tusk context use NAME`` rather than eight variables. An
environment variable still wins over the context, so one command can be redirected.

Read here without pydantic: every `tusk` command starts by reading these settings, and
pydantic-settings with its providers cost more CPU than the rest of `tusk ls` together. The
contexts file's model (:mod:`tusk.client.contexts`) is still what writes it, and what judges a
file this reader does not take as plainly valid, so its error messages are pydantic's as before.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any

from tusk.errors import InvalidArgument

DEFAULT_REPO_URL = "http://127.0.0.1:8081"
DEFAULT_TRIGGER_URL = "http://127.0.0.1:8082"
DEFAULT_SCHEDULER_URL = "http://127.0.0.1:8083"
DEFAULT_INFERENCE_URL = "http://127.0.0.1:8080"
DEFAULT_S3_GATEWAY_URL = "http://127.0.0.1:8085"

ENV_PREFIX = "TUSK_"
SERVICE_URL_FIELDS = ("repo_url", "trigger_url", "scheduler_url", "inference_url", "s3_url")
CONTEXT_FIELDS = (*SERVICE_URL_FIELDS, "token")
"""What a context may hold: the fields of :class:`tusk.client.contexts.Context`."""

# A number as written by hand; anything else (and anything not above 0) is left to pydantic,
# whose answer (and message) it was before.
_PLAIN_NUMBER = re.compile(r"\d+(\.\d*)?|\.\d+")


def default_config_dir() -> Path:
    return Path.home() / ".config" / "tusk"


def contexts_path(config_dir: Path) -> Path:
    return config_dir.expanduser() / "contexts.json"


def check_url(value: str | None) -> str | None:
    if value is not None and not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value.rstrip("/") if value else value


@dataclass(frozen=True)
class ClientSettings:
    """Where the CLI and the SDK find the services; ``TUSK_*`` environment variables, else the
    current context (``tusk context use``), else the local defaults. Build with :meth:`load`."""

    config_dir: Path = field(default_factory=default_config_dir)
    """Where contexts.json is kept."""
    context: str | None = None
    """The context in use, if any."""
    repo_url: str = DEFAULT_REPO_URL
    """The repo service."""
    trigger_url: str = DEFAULT_TRIGGER_URL
    """The trigger service (pipelines, jobs)."""
    scheduler_url: str = DEFAULT_SCHEDULER_URL
    """The scheduler (datums, logs)."""
    inference_url: str = DEFAULT_INFERENCE_URL
    """Model serving."""
    s3_url: str = DEFAULT_S3_GATEWAY_URL
    """The S3 gateway."""
    token: str | None = None
    """Bearer token for the services."""
    timeout: float = 60.0
    """Seconds to wait for an answer (above 0)."""

    @classmethod
    def env_names(cls) -> list[str]:
        return [f"{ENV_PREFIX}{f.name.upper()}" for f in fields(cls)]

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **given: Any) -> ClientSettings:
        """The arguments given, over the environment, over the current context, over the
        defaults. Invalid values raise :class:`InvalidArgument` naming every bad variable."""
        # Names are matched whatever their case, as pydantic-settings matched them.
        env = {k.lower(): v for k, v in (os.environ if environ is None else environ).items()}
        raw: dict[str, Any] = {}
        for f in fields(cls):
            if given.get(f.name) is not None:
                raw[f.name] = given[f.name]
            elif (value := env.get(f"{ENV_PREFIX}{f.name}".lower())) is not None:
                raw[f.name] = value
        values = {**_context_values(raw), **raw}
        problems = []
        for name, value in list(values.items()):
            try:
                values[name] = _checked(name, value)
            except ValueError as e:
                problems.append(f"{ENV_PREFIX}{name.upper()}: {e}")
        if problems:
            raise InvalidArgument("invalid configuration: " + "; ".join(problems))
        return cls(**values)


def _checked(name: str, value: Any) -> Any:
    if name == "config_dir":
        return Path(value)
    if name == "timeout":
        return _timeout(value)
    if not isinstance(value, str):
        raise ValueError("Input should be a valid string")
    if name in SERVICE_URL_FIELDS:
        try:
            return check_url(value)
        except ValueError as e:
            raise ValueError(f"Value error, {e}") from None
    return value


def _timeout(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    if isinstance(value, str) and _PLAIN_NUMBER.fullmatch(value) and float(value) > 0:
        return float(value)
    from pydantic import Field, TypeAdapter, ValidationError

    try:
        return float(TypeAdapter(Annotated[float, Field(gt=0)]).validate_python(value))
    except ValidationError as e:
        raise ValueError(e.errors()[0]["msg"]) from None


def _context_values(given: Mapping[str, Any]) -> dict[str, Any]:
    """The current context's values (and its name), below the environment, above the defaults."""
    path = contexts_path(Path(given.get("config_dir") or default_config_dir()))
    current, contexts = read_contexts(path)
    name = given.get("context") or current
    if name is None:
        return {}
    if name not in contexts:
        raise InvalidArgument(
            f"TUSK_CONTEXT names {name!r}, which is not in {path}; "
            "`tusk context list` shows the contexts"
        )
    return {**contexts[name], "context": name}


def read_contexts(path: Path) -> tuple[str | None, dict[str, dict[str, str]]]:
    """The contexts file's current context and each context's values that are set.

    A file this reader does not plainly accept is read by the file's model, which either
    accepts it after all (it is lenient where this reader is strict) or says what is wrong."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None, {}
    except OSError as e:
        raise InvalidArgument(f"cannot read {path}: {e.strerror}") from None
    plain = _plain_contexts(text)
    if plain is not None:
        return plain
    from tusk.client.contexts import ContextStore

    data = ContextStore(path.parent).parse(text)
    return data.current, {
        name: context.model_dump(exclude_none=True) for name, context in data.contexts.items()
    }


def _plain_contexts(text: str) -> tuple[str | None, dict[str, dict[str, str]]] | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    current = data.get("current")
    contexts = data.get("contexts", {})
    if not (current is None or isinstance(current, str)) or not isinstance(contexts, dict):
        return None
    read: dict[str, dict[str, str]] = {}
    for name, context in contexts.items():
        if not isinstance(context, dict) or not set(context) <= set(CONTEXT_FIELDS):
            return None
        values = {k: v for k, v in context.items() if v is not None}
        if not all(isinstance(v, str) for v in values.values()):
            return None
        try:
            read[name] = {
                k: str(check_url(v)) if k in SERVICE_URL_FIELDS else v for k, v in values.items()
            }
        except ValueError:
            return None
    return current, read
