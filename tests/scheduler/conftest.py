"""Fixtures for the scheduler tests: a real repo service (a uvicorn process, since workers are
processes too and must reach it over HTTP), and the scheduler in-process on a MemoryBus with
the real LocalRunner and tusk-worker."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.backing.common import free_port, wait_until
from tests.scheduler.helpers import EventLog, envelope
from tusk.client import RepoClient
from tusk.events.envelope import EventData
from tusk.events.memory import MemoryBus
from tusk.events.types import JOBS_TOPIC
from tusk_scheduler.app import create_app
from tusk_scheduler.config import SchedulerSettings
from tusk_scheduler.context import Context, build_context


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without the TUSK_* settings of whoever runs the tests."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
    env.update(extra)
    return env


def start_server(
    factory: str, port: int, env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                factory,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def wait_healthy(url: str, process: subprocess.Popen[bytes], what: str) -> None:
    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode}")
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, 300, what)


@pytest.fixture(scope="session")
def repo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A repo service on the embedded defaults, shared by the scheduler tests (each test
    uses repos of its own)."""
    data = tmp_path_factory.mktemp("repo-service")
    port = free_port()
    log = data / "server.log"
    process = start_server(
        "tusk_repo.app:create_app", port, clean_env(TUSK_DATA_DIR=str(data)), log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, "the repo service")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
async def repos(repo_url: str) -> AsyncIterator[RepoClient]:
    async with RepoClient(repo_url) as client:
        yield client


@dataclass
class Scheduler:
    context: Context
    bus: MemoryBus
    events: EventLog
    api: httpx.AsyncClient

    async def send(self, *data: EventData) -> None:
        await self.bus.publish([envelope(d) for d in data])


def scheduler_settings(tmp: Path, repo_url: str, **extra: object) -> SchedulerSettings:
    return SchedulerSettings(  # type: ignore[call-arg]
        data_dir=tmp,
        TUSK_REPO_URL=repo_url,
        TUSK_SCHEDULER_POLL_INTERVAL=0.05,
        TUSK_SCHEDULER_PROGRESS_INTERVAL=0.2,
        TUSK_SCHEDULER_CANCEL_GRACE=10,
        **extra,
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def scheduler_database(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[str | None]:
    """The scheduler's database: SQLite under its data directory, or a fresh database on the
    session's PostgreSQL server."""
    if request.param == "sqlite":
        yield None
        return
    import asyncpg  # type: ignore[import-untyped]

    server = request.getfixturevalue("postgres")
    name = f"sched_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server.url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield server.url.rsplit("/", 1)[0] + f"/{name}"
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def scheduler(
    tmp_path: Path, repo_url: str, scheduler_database: str | None
) -> AsyncIterator[Scheduler]:
    """The scheduler service in-process, with its own database and bus."""
    bus = MemoryBus(partitions=3)
    extra = {"database_url": scheduler_database} if scheduler_database else {}
    settings = scheduler_settings(tmp_path / "scheduler", repo_url, **extra)
    async with build_context(settings, bus=bus) as context:
        events = EventLog(await bus.subscribe([JOBS_TOPIC], group=None))
        transport = httpx.ASGITransport(app=create_app(context=context))
        async with httpx.AsyncClient(transport=transport, base_url="http://scheduler") as api:
            yield Scheduler(context, bus, events, api)


@pytest.fixture(autouse=True)
def _unsandboxed(monkeypatch: pytest.MonkeyPatch) -> None:
    """These pipelines count their runs in files on the host (markers), which the sandbox
    rightly hides; tests/worker/test_sandbox.py and tests/examples run sandboxed."""
    monkeypatch.setenv("TUSK_WORKER_SANDBOX", "off")


@pytest.fixture
def markers(tmp_path: Path) -> Path:
    """Where the test pipeline's command counts its executions."""
    path = tmp_path / "markers"
    path.mkdir()
    return path
