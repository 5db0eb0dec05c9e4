"""schemathesis drives every operation of all four services' OpenAPI with generated requests,
against real uvicorn servers on the embedded defaults (each with its own data directory), and
then follows the schema's links (stateful phase) where they are declared. No request may get
a 5xx, and every answer must match the schema: its status code, content type and body."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.backing.common import free_port
from tests.inference import models
from tests.scheduler.conftest import clean_env, start_server, wait_healthy

CHECKS = ",".join(
    [
        "not_a_server_error",
        "response_schema_conformance",
        "status_code_conformance",
        "content_type_conformance",
    ]
)
# Enough cases per operation to find what the probe found, few enough for the suite.
MAX_EXAMPLES = 25
# The stateful phase follows OpenAPI links: the repo and trigger APIs declare them.
# Adding a model (PUT /v1/models/NAME) with a made-up source is valid, and that model then
# answers 503 ("no version loaded yet", with Retry-After) until its branch has one, which the
# 5xx check cannot tell from a fault; the runtime registry has its own tests
# (tests/inference/test_runtime_models.py).
EXCLUDED = {"inference": ["--exclude-name", "PUT /v1/models/{name}"]}
PHASES = {
    "repo": "examples,coverage,fuzzing,stateful",
    "trigger": "examples,coverage,fuzzing,stateful",
    "scheduler": "examples,coverage,fuzzing",
    "inference": "examples,coverage,fuzzing",
}


@dataclass
class Stack:
    urls: dict[str, str]
    logs: dict[str, Path]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Repo, trigger, scheduler and inference servers; the repo holds a finished commit and a
    model the inference service serves."""
    base = tmp_path_factory.mktemp("fuzz")
    processes: list[subprocess.Popen[bytes]] = []
    urls: dict[str, str] = {}
    logs: dict[str, Path] = {}

    def start(service: str, factory: str, **env: str) -> str:
        port = free_port()
        data = base / service
        data.mkdir()
        logs[service] = data / "server.log"
        process = start_server(
            factory,
            port,
            clean_env(TUSK_DATA_DIR=str(data), **env),
            logs[service],
        )
        processes.append(process)
        urls[service] = f"http://127.0.0.1:{port}"
        wait_healthy(urls[service], process, f"the {service} service")
        return urls[service]

    try:
        repo = start("repo", "tusk_repo.app:create_app", TUSK_REPO_CHUNK_SIZE="65536")
        seed(repo)
        trigger = start("trigger", "tusk_trigger.app:create_app", TUSK_REPO_URL=repo)
        start(
            "scheduler",
            "tusk_scheduler.app:create_app",
            TUSK_REPO_URL=repo,
            TUSK_TRIGGER_URL=trigger,
            TUSK_SCHEDULER_WARM_WORKERS="0",
        )
        start(
            "inference",
            "tusk_inference.app:create_app",
            TUSK_REPO_URL=repo,
            TUSK_MODELS="affine=zoo@master:/affine.onnx",
        )
        yield Stack(urls, logs)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


def seed(url: str) -> None:
    """Something for the generated requests to find."""
    for repo, files in (("seed", {"/a": b"x"}), ("zoo", {"/affine.onnx": models.affine()})):
        httpx.post(f"{url}/v1/repos", json={"name": repo}).raise_for_status()
        httpx.post(f"{url}/v1/repos/{repo}/commits", json={}).raise_for_status()
        for path, data in files.items():
            httpx.put(
                f"{url}/v1/repos/{repo}/commits/master/file", params={"path": path}, content=data
            ).raise_for_status()
        httpx.post(f"{url}/v1/repos/{repo}/commits/master/finish").raise_for_status()


@pytest.mark.parametrize("service", ["repo", "trigger", "scheduler", "inference"])
def test_no_server_errors_and_no_schema_violations(
    stack: Stack, service: str, tmp_path: Path
) -> None:
    url = stack.urls[service]
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "schemathesis"),
            "run",
            f"{url}/openapi.json",
            "--checks",
            CHECKS,
            "--max-examples",
            str(MAX_EXAMPLES),
            "--phases",
            PHASES[service],
            "--seed",
            "7",
            "--request-timeout",
            "30",
            "--generation-database",
            "none",
            "--no-color",
            *EXCLUDED.get(service, []),
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
        cwd=tmp_path,
    )
    output = result.stdout + result.stderr
    server_log = stack.logs[service].read_text(errors="replace")[-5000:]
    assert result.returncode == 0, f"{output[-12000:]}\n--- {service} log ---\n{server_log}"
    assert "No issues found" in output or " passed" in output, output[-3000:]
