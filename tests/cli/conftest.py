"""Fixtures for the SDK and CLI tests: the repo app in-process, and `tusk up` as a process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tusk.client import RepoClient
from tusk_repo.app import create_app
from tusk_repo.config import RepoSettings
from tusk_repo.context import build_context

TUSK = Path(sys.executable).with_name("tusk")
START_TIMEOUT = 300.0  # a bound for a hang: tusk up starts in seconds, slower on a loaded machine


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[RepoClient]:
    """A client of a fresh repo service running in-process on a temporary data directory."""
    async with build_context(RepoSettings(data_dir=tmp_path / "data")) as context:
        transport = httpx.ASGITransport(app=create_app(context=context))
        async with RepoClient("http://repo.test", transport=transport) as repo_client:
            yield repo_client


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any TUSK_* setting of the person running the tests."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
    env.update(extra)
    return env


@dataclass
class Stack:
    """A `tusk up` process and a way to run the real CLI against it."""

    process: subprocess.Popen[bytes]
    url: str
    data_dir: Path
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    def tusk(
        self,
        *args: str | Path,
        input: bytes | None = None,
        check: bool = True,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        result = subprocess.run(
            [str(TUSK), *map(str, args)],
            input=input,
            capture_output=True,
            timeout=120,
            env=env or self.env,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"tusk {' '.join(map(str, args))} exited {result.returncode}:\n"
                f"{result.stderr.decode()}"
            )
        return result

    def log_text(self) -> str:
        return self.log.read_text()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)


def start_stack(
    tmp: Path, *extra_args: str, port: int | None = None, env: dict[str, str] | None = None
) -> Stack:
    port = port or free_port()
    data_dir = tmp / "data"
    url = f"http://127.0.0.1:{port}"
    # The other services tusk up runs get free ports too, so stacks never collide.
    others = {
        f"TUSK_{name}_PORT": str(free_port())
        for name in ("TRIGGER", "SCHEDULER", "INFERENCE", "CONSOLE", "S3_GATEWAY")
    }
    urls = {
        name.replace("_PORT", "_URL"): f"http://127.0.0.1:{value}" for name, value in others.items()
    }
    env = clean_env(
        TUSK_DATA_DIR=str(data_dir),
        TUSK_REPO_PORT=str(port),
        TUSK_REPO_URL=url,
        **others,
        **urls,
        **(env or {}),
    )
    log = tmp / "up.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(TUSK), "up", *extra_args], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    stack = Stack(process, url, data_dir, log, env)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"tusk up exited {process.returncode}:\n{stack.log_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return stack
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    stack.stop(signal.SIGKILL)
    raise AssertionError(
        f"tusk up did not answer /healthz in {START_TIMEOUT} s:\n{stack.log_text()}"
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`tusk up` on a free port with its own data directory, shared by a module's tests."""
    running = start_stack(tmp_path_factory.mktemp("stack"))
    try:
        yield running
    finally:
        try:
            running.stop()
        except subprocess.TimeoutExpired:
            running.process.kill()
            running.process.wait()
