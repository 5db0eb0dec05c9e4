"""How every service is put together: one FastAPI app per service over one context (its
long-lived clients), built in the app's lifespan when the service runs alone, or built by the
embedded stack and handed in.

Each service's ``app.py`` describes itself with a :class:`ServiceDefinition` (``SERVICE``), so
that the embedded stack assembles every service the same way, in a loop, and makes its app
with :func:`service_app`, so that every lifespan builds, logs and closes alike.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import structlog
from fastapi import FastAPI
from starlette.types import ASGIApp

from tusk import __version__
from tusk.events.bus import EventBus
from tusk.logging import configure_logging
from tusk.routing import EncodedSlashMiddleware
from tusk.settings import CommonSettings

log = structlog.get_logger()

ContextT = TypeVar("ContextT")
ContextT_co = TypeVar("ContextT_co", covariant=True)
ContextT_contra = TypeVar("ContextT_contra", contravariant=True)
SettingsT = TypeVar("SettingsT", bound=CommonSettings)
SettingsT_contra = TypeVar("SettingsT_contra", bound=CommonSettings, contravariant=True)


class BuildContext(Protocol[SettingsT_contra, ContextT_co]):
    """A service's ``build_context``: its clients, started, and closed on exit. ``bus`` is one
    shared by the services of a process (embedded mode); None means the service's own."""

    def __call__(
        self, settings: SettingsT_contra, *, bus: EventBus | None = None
    ) -> AbstractAsyncContextManager[ContextT_co]: ...


class CreateApp(Protocol[ContextT_contra]):
    """A service's ``create_app``, given a context built elsewhere."""

    def __call__(self, *, context: ContextT_contra) -> FastAPI: ...


@dataclass(frozen=True)
class ServiceDefinition(Generic[SettingsT, ContextT]):
    """What the embedded stack needs to run a service: how to build its context and its app,
    and which variable moves its port."""

    name: str
    build_context: BuildContext[SettingsT, ContextT]
    create_app: CreateApp[ContextT]
    port_variable: str


class ServiceAPI(FastAPI):
    """A service's FastAPI app. Qualified names (``p/x``) travel as one segment, ``p%2Fx``:
    :class:`EncodedSlashMiddleware` wraps every other middleware, so that they all see the
    path the router will."""

    def build_middleware_stack(self) -> ASGIApp:
        return EncodedSlashMiddleware(super().build_middleware_stack())


def service_app(
    name: str,
    settings: SettingsT,
    context: ContextT | None,
    build: Callable[[], AbstractAsyncContextManager[ContextT]],
    *,
    alone: bool,
    ready: Callable[[ContextT], Mapping[str, object]] | None = None,
    freeze_gc: bool = False,
    stopping: str | None = None,
    **fastapi: Any,
) -> FastAPI:
    """The app of service ``name``, with its lifespan: with ``context`` it serves that one
    (built and closed by whoever made it), otherwise it builds its own with ``build`` and logs
    "<name> ready" with what ``ready`` tells of it. ``alone``: a process of its own, which
    configures logging. ``freeze_gc``: what start-up made lives as long as the process; frozen,
    it is left out of full garbage collections, which keeps them short. ``stopping``: logged
    when the service starts to stop."""
    if alone:
        configure_logging(settings.log_level, json=settings.log_json)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if context is not None:
            app.state.context = context
            yield
            return
        async with build() as built:
            app.state.context = built
            if freeze_gc:
                gc.freeze()
            log.info(f"{name} ready", **(ready(built) if ready else {}))
            yield
            if stopping:
                log.info(f"{name} stopping: {stopping}")
        log.info(f"{name} stopped")

    fastapi.setdefault("version", __version__)
    app = ServiceAPI(lifespan=lifespan, **fastapi)
    if context is not None:
        app.state.context = context
    return app
