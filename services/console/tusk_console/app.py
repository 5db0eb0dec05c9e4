"""The console's FastAPI application: server-rendered pages, a little script, live events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response

from tusk.api import RequestContextMiddleware
from tusk.app import ServiceDefinition, service_app
from tusk.events.bus import EventBus
from tusk_console.api import auth, dag, lineage, live, models, pipelines, repos
from tusk_console.api.errors import install_page_errors
from tusk_console.config import ConsoleSettings
from tusk_console.context import Context, build_context

log = structlog.get_logger()

STATIC = Path(__file__).resolve().parent / "static"


class CachedStatic(StaticFiles):
    """Assets, kept by browsers for a day: pages name them with the version (``?v=``)."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "public, max-age=86400"
        return response


def create_app(
    settings: ConsoleSettings | None = None,
    context: Context | None = None,
    bus: EventBus | None = None,
) -> FastAPI:
    settings = settings or (context.settings if context else ConsoleSettings())
    app = service_app(
        "console",
        settings,
        context,
        lambda: build_context(settings, bus),
        alone=context is None and bus is None,  # a process of its own (`uvicorn --factory`)
        ready=lambda _: {
            "repo_url": settings.repo_url,
            "trigger_url": settings.trigger_url,
            "inference_url": settings.inference_url,
        },
        title="tusk console",
        # Pages only: the console's API is the other services' (no OpenAPI of its own).
        docs_url=None, redoc_url=None, openapi_url=None,
    )
    install_page_errors(app)
    app.add_middleware(RequestContextMiddleware)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> dict[str, str]:
        # The console holds no state: it is ready once it serves; the pages say when a
        # service behind it does not answer.
        return {"status": "ready"}

    app.mount("/static", CachedStatic(directory=STATIC), name="static")
    for module in (auth, dag, repos, pipelines, lineage, models, live):
        app.include_router(module.router)
    return app


SERVICE = ServiceDefinition(
    name="console",
    build_context=build_context,
    create_app=create_app,
    port_variable="TUSK_CONSOLE_PORT",
)
