"""Shared helpers of the deployment checks: the settings' environment names, the rendered chart."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from tests.deploy.tools import helm
from tusk.settings import CommonSettings
from tusk.worker.config import WorkerSettings
from tusk_cli.common import CliSettings
from tusk_console.config import ConsoleSettings
from tusk_inference.config import InferenceSettings
from tusk_repo.config import RepoSettings
from tusk_scheduler.config import SchedulerSettings
from tusk_trigger.config import TriggerSettings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "tusk"

# What each deployable reads its settings with (the `migrate` one-shot reads CommonSettings;
# the CLI reads its own without pydantic-settings, see tusk.client.config).
SETTINGS: dict[str, type[BaseSettings] | type[CliSettings]] = {
    "repo": RepoSettings,
    "trigger": TriggerSettings,
    "scheduler": SchedulerSettings,
    "inference": InferenceSettings,
    "console": ConsoleSettings,
    "migrate": CommonSettings,
    "worker": WorkerSettings,
    "cli": CliSettings,
}


def env_names(cls: type[BaseSettings] | type[CliSettings]) -> set[str]:
    """The environment variables a pydantic-settings class reads: its aliases, else prefix+name."""
    if issubclass(cls, CliSettings):
        return set(cls.env_names())
    prefix = str(cls.model_config.get("env_prefix", ""))
    names: set[str] = set()
    for name, field in cls.model_fields.items():
        alias = field.validation_alias or field.alias
        if alias is None:
            names.add(f"{prefix}{name}".upper())
        elif isinstance(alias, str):
            names.add(alias.upper())
        else:  # AliasChoices
            names.update(c.upper() for c in alias.choices if isinstance(c, str))
    return names


ALL_ENV_NAMES: set[str] = set().union(*(env_names(c) for c in SETTINGS.values()))


def render(*args: str, namespace: str = "tusk", release: str = "tusk") -> list[dict[str, Any]]:
    """`helm template` of the chart; the documents, without empty ones."""
    result = subprocess.run(
        [str(helm()), "template", release, str(CHART), "--namespace", namespace, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


VALUES = {"default": (), "dev": ("-f", str(CHART / "values-dev.yaml"))}


@pytest.fixture(scope="session", params=sorted(VALUES))
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(*VALUES[request.param])
