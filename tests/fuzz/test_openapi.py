"""schemathesis drives every operation of the repo API with generated requests, against a real
uvicorn server on the embedded defaults: no request may get a 5xx."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.backing.common import free_port, wait_until


@pytest.fixture
def repo_server(tmp_path: Path):  # type: ignore[no-untyped-def]
    port = free_port()
    env = {**os.environ, "TUSK_DATA_DIR": str(tmp_path), "TUSK_REPO_CHUNK_SIZE": "65536"}
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "tusk_repo.app:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(ready, 300, "repo service")
        # Something for the generated requests to find: a repo with a finished commit.
        httpx.post(f"{url}/v1/repos", json={"name": "seed"}).raise_for_status()
        httpx.post(f"{url}/v1/repos/seed/commits", json={}).raise_for_status()
        httpx.put(
            f"{url}/v1/repos/seed/commits/master/file", params={"path": "/a"}, content=b"x"
        ).raise_for_status()
        httpx.post(f"{url}/v1/repos/seed/commits/master/finish").raise_for_status()
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def test_no_server_errors(repo_server: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "schemathesis"),
            "run",
            f"{repo_server}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "25",
            "--seed",
            "7",
            "--request-timeout",
            "30",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    output = result.stdout + result.stderr
    server_log = (tmp_path / "server.log").read_text(errors="replace")[-5000:]
    assert result.returncode == 0, f"{output[-8000:]}\n--- server log ---\n{server_log}"
