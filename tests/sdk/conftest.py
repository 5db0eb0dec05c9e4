"""Services on real ports, each stack in a thread of its own with its own event loop, so that
blocking clients (tusk.Client, boto3, pandas, DuckDB, the AWS CLI) can be called from tests,
sync or async, as a user calls them.

``services``: every service (`tusk up`'s run_embedded) on SQLite, a local directory and the
in-process bus. ``gateway``: the repo API and the S3 gateway (unsigned, and a second one that
requires SigV4 with a token) on both backends: embedded, and PostgreSQL + S3 (versitygw).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from tests.cli.conftest import free_port
from tests.conftest import embedded_settings, real_settings
from tusk_inference.config import InferenceSettings
from tusk_repo.app import create_app as create_repo_app
from tusk_repo.config import RepoSettings
from tusk_repo.context import build_context
from tusk_repo.s3.app import create_gateway_app
from tusk_repo.s3.sigv4 import TokenCredentials
from tusk_scheduler.config import SchedulerSettings
from tusk_stack.embedded import EmbeddedSettings, run_embedded
from tusk_trigger.config import TriggerSettings

START_TIMEOUT = 120.0
TOKEN = "gateway-test-token"


class ThreadStack:
    """Runs ``main(stop)`` on an event loop in a daemon thread until :meth:`close`."""

    def __init__(self, main: Callable[[asyncio.Event], AbstractAsyncContextManager[None]]
                 ) -> None:
        self._main = main
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        async def body() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            async with self._main(self._stop):
                self._ready.set()
                await self._stop.wait()

        try:
            asyncio.run(body())
        except BaseException as e:
            self._error = e
        finally:
            self._ready.set()

    def wait_until_serving(self, *urls: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        for url in urls:
            while True:
                if self._error is not None:
                    raise AssertionError(f"the stack failed to start: {self._error!r}")
                try:
                    httpx.get(url, timeout=2)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise AssertionError(f"{url} did not answer in {START_TIMEOUT} s") \
                            from None
                    time.sleep(0.05)  # polling a port that is not listening yet

    def close(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)
        if self._error is not None and not isinstance(self._error, asyncio.CancelledError):
            raise AssertionError(f"the stack ended with {self._error!r}")


def embedded_in_thread(settings: EmbeddedSettings) -> ThreadStack:
    """Every service embedded (as `tusk up` runs them) on a loop of their own, in a thread."""

    @asynccontextmanager
    async def main(stop: asyncio.Event) -> AsyncIterator[None]:
        task = asyncio.create_task(run_embedded(settings, stop=stop, handle_signals=False))
        try:
            yield
        finally:
            stop.set()
            await task

    return ThreadStack(main)


@dataclass(frozen=True)
class Services:
    repo: str
    trigger: str
    scheduler: str
    inference: str
    s3: str
    data_dir: Path

    @property
    def urls(self) -> dict[str, str]:
        return {"repo_url": self.repo, "trigger_url": self.trigger,
                "scheduler_url": self.scheduler, "inference_url": self.inference}


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """Every service, embedded, on free ports (`tusk up` in a thread)."""
    data = tmp_path_factory.mktemp("services")
    ports = {name: free_port() for name in ("repo", "trigger", "scheduler", "inference", "s3")}
    settings = EmbeddedSettings(
        repo=RepoSettings(data_dir=data, TUSK_REPO_PORT=ports["repo"],  # type: ignore[call-arg]
                          TUSK_S3_GATEWAY_PORT=ports["s3"]),
        trigger=TriggerSettings(data_dir=data, TUSK_TRIGGER_PORT=ports["trigger"]),  # type: ignore[call-arg]
        scheduler=SchedulerSettings(  # type: ignore[call-arg]
            data_dir=data, TUSK_SCHEDULER_PORT=ports["scheduler"],
            TUSK_SCHEDULER_CODE_DIR=str(data),
        ),
        inference=InferenceSettings(  # type: ignore[call-arg]
            data_dir=data, TUSK_INFERENCE_PORT=ports["inference"],
            TUSK_INFERENCE_RESYNC_SECONDS=2.0,
        ),
        s3_gateway=True,
    )

    stack = embedded_in_thread(settings)
    url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    try:
        stack.wait_until_serving(f"{url['repo']}/healthz", f"{url['inference']}/healthz",
                                 f"{url['s3']}/")
        yield Services(url["repo"], url["trigger"], url["scheduler"], url["inference"],
                       url["s3"], data)
    finally:
        stack.close()


@dataclass(frozen=True)
class Gateway:
    backend: str
    repo: str
    s3: str
    s3_signed: str


@pytest.fixture(scope="module", params=["embedded", "real"])
def gateway(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Gateway]:
    """The repo API and the S3 gateway on one backend; ``s3_signed`` requires SigV4 with
    the secret access key ``TOKEN``."""
    tmp = tmp_path_factory.mktemp(f"gateway-{request.param}")
    if request.param == "embedded":
        settings = embedded_settings(tmp)
    else:
        settings = real_settings(request.getfixturevalue("postgres"),
                                 request.getfixturevalue("s3"), tmp)
    ports = [free_port() for _ in range(3)]

    @asynccontextmanager
    async def main(stop: asyncio.Event) -> AsyncIterator[None]:
        async with build_context(settings) as ctx:
            apps = [
                create_repo_app(context=ctx),
                create_gateway_app(ctx),
                create_gateway_app(ctx, credentials=TokenCredentials([TOKEN])),
            ]
            servers = [
                uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                              log_config=None, lifespan="off"))
                for app, port in zip(apps, ports, strict=True)
            ]
            tasks = [asyncio.create_task(s.serve()) for s in servers]
            try:
                yield
            finally:
                for server in servers:
                    server.should_exit = True
                await asyncio.gather(*tasks)

    stack = ThreadStack(main)
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        stack.wait_until_serving(f"{urls[0]}/healthz", urls[1], urls[2])
        yield Gateway(request.param, *urls)
    finally:
        stack.close()
