"""Embedded mode: every service in one process and one event loop (``tusk up``).

Each service's context (database, object store, …) is built here and handed to its app, so
that start-up failures surface as exceptions before anything listens, and so that the services
share in-process adapters such as the memory bus. Every service is assembled the same way,
from the ``SERVICE`` definition its ``app.py`` exports, in order: each reaches those started
before it at the addresses they listen on. Each app gets its own uvicorn server; signals are
handled once, here, for all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import structlog
import uvicorn
from sqlalchemy.engine import make_url
from starlette.types import ASGIApp

from tusk.app import ServiceDefinition
from tusk.client.config import DEFAULT_REPO_URL
from tusk.errors import TuskError, Unavailable
from tusk.events.factory import open_event_bus
from tusk.events.feed import event_feed_router
from tusk_console.app import SERVICE as CONSOLE
from tusk_console.config import ConsoleSettings
from tusk_inference.app import SERVICE as INFERENCE
from tusk_inference.config import InferenceSettings
from tusk_repo.app import SERVICE as REPO
from tusk_repo.config import RepoSettings
from tusk_repo.s3.app import create_gateway_app
from tusk_scheduler.app import SERVICE as SCHEDULER
from tusk_scheduler.config import SchedulerSettings
from tusk_trigger.app import SERVICE as TRIGGER
from tusk_trigger.config import TriggerSettings

log = structlog.get_logger()

GRACEFUL_SHUTDOWN_SECONDS = 30
# In start-up order: each service reaches those before it (the repo service first; the console,
# which reads every other, last).
SERVICES: tuple[ServiceDefinition[Any, Any], ...] = (REPO, TRIGGER, SCHEDULER, INFERENCE, CONSOLE)


@dataclass(frozen=True)
class EmbeddedSettings:
    """The settings of each service the embedded stack runs."""

    repo: RepoSettings
    trigger: TriggerSettings
    scheduler: SchedulerSettings
    inference: InferenceSettings
    console: ConsoleSettings | None = None
    s3_gateway: bool = False
    """Serve the S3 gateway on the repo settings' ``s3_gateway_port`` (`tusk up` does)."""

    @property
    def data_dir(self) -> Path:
        return self.repo.data_dir


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to :func:`run_embedded`, which stops them all."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class _Listener:
    name: str
    server: _Server
    socket: socket.socket

    @property
    def url(self) -> str:
        host, port = self.socket.getsockname()[:2]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}"


async def run_embedded(
    settings: EmbeddedSettings, *, stop: asyncio.Event | None = None, handle_signals: bool = True
) -> None:
    """Serve every service until ``stop`` is set, or SIGINT/SIGTERM arrives (with
    ``handle_signals``); then stop accepting connections, let requests in flight finish (up
    to 30 s; a second Ctrl-C cuts that short) and close the services' clients."""
    stop = stop or asyncio.Event()
    listeners: list[_Listener] = []
    with (
        _data_dir_lock(settings.data_dir),
        _signals(stop, listeners) if handle_signals else contextlib.nullcontext(),
    ):
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(_close_sockets, listeners)
            repo = settings.repo
            debug = repo.log_level.upper() == "DEBUG"
            # One bus for every service: the in-process MemoryBus, or Kafka when configured.
            bus = await stack.enter_async_context(open_event_bus(repo))
            urls: dict[str, str] = {}
            for service in SERVICES:
                own = getattr(settings, service.name)
                if own is None:  # not run (the console, unless asked for)
                    continue
                # The others reach the services before them over HTTP, at the addresses they
                # listen on, like separate deployments do.
                own = own.model_copy(update={
                    f"{name}_url": url for name, url in urls.items()
                    if f"{name}_url" in type(own).model_fields
                })
                context = await stack.enter_async_context(service.build_context(own, bus=bus))
                app = service.create_app(context=context)
                if service is REPO:
                    # Another process cannot read the in-process bus: `tusk events tail` reads
                    # this.
                    app.include_router(event_feed_router(bus), prefix="/v1")
                listener = _listener(
                    service.name, app, own.host, own.port, service.port_variable, debug=debug
                )
                listeners.append(listener)
                urls[service.name] = listener.url
                if service is REPO and settings.s3_gateway and repo.s3_gateway_port:
                    listeners.append(_listener(
                        "s3", create_gateway_app(context), repo.host, repo.s3_gateway_port,
                        "TUSK_S3_GATEWAY_PORT", debug=debug,
                    ))
            if stop.is_set():  # a signal arrived while starting
                return
            log.info(
                "tusk is up", data_dir=str(settings.data_dir),
                database=make_url(repo.resolved_database_url).render_as_string(),
                objects=repo.resolved_object_store_url,
                **{f"{item.name}_url": item.url for item in listeners},
            )
            if urls["repo"] != DEFAULT_REPO_URL:
                log.info("point the CLI at it", run=" ".join(
                    f"TUSK_{item.name.upper()}_URL={item.url}" for item in listeners
                ))
            await _serve(listeners, stop)
    log.info("tusk stopped")


def _listener(
    name: str, app: ASGIApp, host: str, port: int, variable: str, *, debug: bool
) -> _Listener:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not left 0: asyncio sets TCP_NODELAY only on sockets that say they
    # are TCP. Without it a keep-alive request's answer (headers and body written apart) waits
    # for the client's delayed ACK: 40 ms a request.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise Unavailable(
            f"the {name} service cannot listen on {host}:{port}: {e.strerror}; "
            f"set {variable} (or --port) to use another port"
        ) from None
    # Listening now, before serving: services that start talking to each other before every
    # server runs (the scheduler resuming jobs) wait in the backlog instead of being refused.
    sock.listen(2048)
    config = uvicorn.Config(
        app, log_config=None, access_log=debug, lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    return _Listener(name, _Server(config), sock)


def _close_sockets(listeners: list[_Listener]) -> None:
    for listener in listeners:
        listener.socket.close()


async def _serve(listeners: list[_Listener], stop: asyncio.Event) -> None:
    tasks = {
        asyncio.create_task(item.server.serve(sockets=[item.socket]), name=item.name): item
        for item in listeners
    }
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([*tasks, stopping], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        for item in listeners:
            item.server.should_exit = True
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    for task, outcome in zip(tasks, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            raise outcome
        if not stop.is_set():
            raise TuskError(f"the {tasks[task].name} service stopped unexpectedly; see the log")


@contextlib.contextmanager
def _signals(stop: asyncio.Event, listeners: list[_Listener]) -> Iterator[None]:
    loop = asyncio.get_running_loop()

    def on_signal(number: signal.Signals) -> None:
        if stop.is_set():
            if number == signal.SIGINT:
                log.warning("second Ctrl-C: not waiting for requests in flight")
                for item in listeners:
                    item.server.force_exit = True
            return
        log.info("stopping", signal=number.name)
        stop.set()

    handled = (signal.SIGINT, signal.SIGTERM)
    for number in handled:
        loop.add_signal_handler(number, on_signal, number)
    try:
        yield
    finally:
        for number in handled:
            loop.remove_signal_handler(number)


@contextlib.contextmanager
def _data_dir_lock(data_dir: Path) -> Iterator[None]:
    """One embedded stack per data directory: two would share one SQLite file and objects."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        handle: IO[str] = (data_dir / "tusk-up.lock").open("a+")
    except OSError as e:
        raise Unavailable(f"cannot use the data directory {data_dir}: {e.strerror}") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Unavailable(
                f"another `tusk up` is using the data directory {data_dir}; stop it, or pass "
                "--data-dir (TUSK_DATA_DIR) to use another one"
            ) from None
        yield
