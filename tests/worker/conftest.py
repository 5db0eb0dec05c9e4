"""Fixtures for the worker tests: a real repo server (uvicorn, embedded defaults) that
`tusk-worker` processes talk to, and a client of it."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.backing.common import free_port, wait_until
from tests.worker.helpers import PY, clean_env
from tusk.client import RepoClient


@pytest.fixture(scope="module")
def repo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A repo service as a real process, shared by a module's tests."""
    tmp = tmp_path_factory.mktemp("repo")
    port = free_port()
    env = clean_env(
        TUSK_DATA_DIR=str(tmp / "data"),
        TUSK_REPO_CHUNK_SIZE="65536",
        TUSK_REPO_MAX_FILE_BYTES=str(4 << 20),  # an output over it is refused
    )
    log = (tmp / "server.log").open("wb")
    process = subprocess.Popen(
        [
            PY,
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
        if process.poll() is not None:
            raise AssertionError(f"repo server exited: {(tmp / 'server.log').read_text()}")
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(ready, 300, "repo service")  # a bound for a hang, loaded machines included
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture
async def repo(repo_url: str) -> AsyncIterator[RepoClient]:
    async with RepoClient(repo_url) as client:
        yield client
