"""A service run as a process of its own (``uvicorn --factory …:create_app``, as the images run
them) logs as ``TUSK_LOG_LEVEL`` and ``TUSK_LOG_JSON`` say; embedded, the process decides."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from tests.backing.common import free_port, port_open, wait_until
from tusk_inference.app import create_app as inference_app
from tusk_inference.config import InferenceSettings
from tusk_repo.app import create_app as repo_app
from tusk_repo.config import RepoSettings
from tusk_scheduler.app import create_app as scheduler_app
from tusk_scheduler.config import SchedulerSettings
from tusk_trigger.app import create_app as trigger_app
from tusk_trigger.config import TriggerSettings

SERVICES: list[tuple[Callable[..., Any], type[Any]]] = [
    (repo_app, RepoSettings),
    (trigger_app, TriggerSettings),
    (scheduler_app, SchedulerSettings),
    (inference_app, InferenceSettings),
]


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


@pytest.mark.parametrize(("create_app", "settings_type"), SERVICES)
def test_a_service_of_its_own_configures_logging_from_its_settings(
    create_app: Callable[..., Any], settings_type: type[Any], tmp_path: Path
) -> None:
    create_app(settings_type(data_dir=tmp_path, log_level="WARNING", log_json=True))
    config = structlog.get_config()
    assert isinstance(config["processors"][-1], structlog.processors.JSONRenderer)
    logger = config["wrapper_class"]
    assert logger.info is not logger.warning  # INFO is filtered out, WARNING is not
    assert logger.info.__name__ == "_nop"


def test_an_embedded_service_leaves_logging_to_its_process(tmp_path: Path) -> None:
    structlog.reset_defaults()
    before = structlog.get_config()["processors"]
    repo_app(RepoSettings(data_dir=tmp_path, log_json=True), bus=object())  # type: ignore[arg-type]
    assert structlog.get_config()["processors"] == before


def test_uvicorn_factory_logs_json_lines(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TUSK_")},
        "TUSK_DATA_DIR": str(tmp_path),
        "TUSK_LOG_JSON": "true",
    }
    argv = [sys.executable, "-m", "uvicorn", "--factory", "tusk_repo.app:create_app"]
    process = subprocess.Popen(
        [*argv, "--host", "127.0.0.1", "--port", str(port), "--no-access-log"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # The lifespan logs "repo service ready" before the port opens.
        wait_until(lambda: port_open("127.0.0.1", port), 300, "the repo service")
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=20)
    ready = [line for line in output.splitlines() if "repo service ready" in line]
    assert ready, output
    record = json.loads(ready[0])
    assert record["event"] == "repo service ready"
    assert record["level"] == "info"
    assert "timestamp" in record
