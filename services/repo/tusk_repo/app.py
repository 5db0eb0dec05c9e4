"""The repo service's FastAPI application."""

from __future__ import annotations

import structlog
from fastapi import FastAPI, Request

from tusk.about import add_about_route, describe
from tusk.api import add_common_middleware, add_health_routes, install_error_handlers
from tusk.app import ServiceDefinition, service_app
from tusk.auth.audit import AuditMiddleware
from tusk.events.bus import EventBus
from tusk.events.parking import add_outbox_routes
from tusk.events.relay import OutboxRelay
from tusk.limits import add_request_limits
from tusk.openapi import add_links
from tusk_repo.api import auth, branches, commits, files, lifecycle, projects, repos
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
    app = service_app(
        "repo service",
        settings,
        context,
        lambda: build_context(settings, bus=bus),
        alone=context is None and bus is None,  # a process of its own (`uvicorn --factory`)
        ready=lambda built: {
            "database": built.db.engine.url.render_as_string(),
            "objects": settings.resolved_object_store_url,
        },
        # Large requests would otherwise make full collections rescan start-up's objects.
        freeze_gc=True,
        title="tusk repo service",
        description=DESCRIPTION,
    )
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

    for module in (projects, repos, branches, commits, files, lifecycle):
        app.include_router(module.router, prefix="/v1", dependencies=[RepoAccess])
    app.include_router(auth.router, prefix="/v1")
    add_links(app, LINKS)
    return app


def _relay(request: Request) -> OutboxRelay:
    relay: OutboxRelay = request.app.state.context.relay
    return relay


SERVICE = ServiceDefinition(
    name="repo",
    build_context=build_context,
    create_app=create_app,
    port_variable="TUSK_REPO_PORT",
)
