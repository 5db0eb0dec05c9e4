"""The repo service's FastAPI application."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, Request

from tusk import __version__
from tusk.about import add_about_route, describe
from tusk.api import add_common_middleware, add_health_routes, install_error_handlers
from tusk.auth.audit import AuditMiddleware
from tusk.events.bus import EventBus
from tusk.events.parking import add_outbox_routes
from tusk.events.relay import OutboxRelay
from tusk.limits import add_request_limits
from tusk.logging import configure_logging
from tusk.openapi import add_links
from tusk_repo.api import auth, branches, commits, files, lifecycle, repos
from tusk_repo.api.access import RepoAccess
from tusk_repo.api.links import LINKS
from tusk_repo.auth_verifier import audit_sink, repo_verifier
from tusk_repo.config import RepoSettings
from tusk_repo.context import Context, build_context

log = structlog.get_logger()

DESCRIPTION = """
Versioned data: **repos** hold **branches**; a branch's head is its last finished **commit**;
a commit is a snapshot of a file tree. Start a commit on a branch, put and delete files in it,
then finish it. Address commits by id or by branch, with `^N` / `~N` for ancestors
(`master^2`, URL-encoded as `master%5E2`). File contents are stored once per distinct chunk.
"""


def create_app(
    settings: RepoSettings | None = None,
    context: Context | None = None,
    *,
    bus: EventBus | None = None,
) -> FastAPI:
    """The app; with ``context`` it uses those clients instead of building its own, with
    ``bus`` an event bus shared with other services of the process (embedded mode)."""
    settings = settings or (context.settings if context else RepoSettings())
    if context is None and bus is None:  # a process of its own (`uvicorn --factory`)
        configure_logging(settings.log_level, json=settings.log_json)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if context is not None:
            app.state.context = context
            yield
            return
        async with build_context(settings, bus=bus) as built:
            app.state.context = built
            # What start-up made lives as long as the process. Frozen, it is left out of full
            # garbage collections, which otherwise rescan it after every few large requests.
            gc.freeze()
            log.info(
                "repo service ready",
                database=built.db.engine.url.render_as_string(),
                objects=settings.resolved_object_store_url,
            )
            yield
        log.info("repo service stopped")

    app = FastAPI(
        title="tusk repo service", version=__version__, description=DESCRIPTION, lifespan=lifespan
    )
    if context is not None:
        app.state.context = context
    install_error_handlers(app)
    verifier = repo_verifier(app, settings)
    app.state.verifier = verifier
    app.add_middleware(AuditMiddleware, sink=audit_sink(app), enabled=verifier.enabled)
    add_common_middleware(
        app,
        settings.api_tokens,
        verifier=verifier,
        metrics_public=settings.auth_metrics_public,
        docs_public=settings.auth_docs_public,
    )
    add_request_limits(app, settings, streaming_paths=[r"/v1/repos/[^/]+/commits/[^/]+/files?"])

    add_health_routes(app)
    add_about_route(app, describe("repo", settings, uses_objects=True))
    add_outbox_routes(app, _relay, serve_metrics=True)

    for module in (repos, branches, commits, files, lifecycle):
        app.include_router(module.router, prefix="/v1", dependencies=[RepoAccess])
    app.include_router(auth.router, prefix="/v1")
    add_links(app, LINKS)
    return app


def _relay(request: Request) -> OutboxRelay:
    relay: OutboxRelay = request.app.state.context.relay
    return relay
