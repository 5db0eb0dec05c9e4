"""The trigger service's FastAPI application."""

from __future__ import annotations

import structlog
from fastapi import FastAPI, Request

from tusk.about import add_about_route, describe
from tusk.api import add_common_middleware, add_health_routes, install_error_handlers
from tusk.app import ServiceDefinition, service_app
from tusk.auth.audit import AuditMiddleware
from tusk.auth.verify import remote_verifier
from tusk.events.bus import EventBus
from tusk.events.parking import add_outbox_routes
from tusk.events.relay import OutboxRelay
from tusk.limits import add_request_limits
from tusk.openapi import add_component_schemas, add_links
from tusk_trigger.api import jobs, pipelines
from tusk_trigger.config import TriggerSettings
from tusk_trigger.context import Context, build_context

log = structlog.get_logger()

DESCRIPTION = """
**Pipelines** run a command over **datums** of their input repos whenever an input commit
finishes (or a cron input ticks) and write to an output repo named after the pipeline. Each
run is a **job**: exactly one per pipeline version and set of input commits.
"""


def create_app(
    settings: TriggerSettings | None = None,
    context: Context | None = None,
    bus: EventBus | None = None,
) -> FastAPI:
    settings = settings or (context.settings if context else TriggerSettings())
    app = service_app(
        "trigger service",
        settings,
        context,
        lambda: build_context(settings, bus),
        alone=context is None and bus is None,  # a process of its own (`uvicorn --factory`)
        ready=lambda _: {"repo_url": settings.repo_url},
        title="tusk trigger service",
        description=DESCRIPTION,
    )
    install_error_handlers(app)
    verifier = remote_verifier(
        settings.api_tokens, lambda: app.state.context.repos, settings.auth_cache_seconds
    )
    # Pipeline and job writes go to the audit log the repo service keeps.
    app.add_middleware(
        AuditMiddleware,
        sink=lambda record: app.state.context.repos.record_audit(record),
        enabled=verifier.enabled,
    )
    add_common_middleware(
        app,
        settings.api_tokens,
        verifier=verifier,
        metrics_public=settings.auth_metrics_public,
        docs_public=settings.auth_docs_public,
    )
    add_request_limits(app, settings)

    add_health_routes(app)
    add_about_route(app, describe("trigger", settings))
    add_outbox_routes(app, _relay, serve_metrics=True)

    app.include_router(pipelines.router, prefix="/v1")
    add_component_schemas(app, pipelines.SPEC_DEFS)
    add_links(app, pipelines.LINKS)
    app.include_router(jobs.router, prefix="/v1")
    return app


def _relay(request: Request) -> OutboxRelay:
    relay: OutboxRelay = request.app.state.context.relay
    return relay


SERVICE = ServiceDefinition(
    name="trigger",
    build_context=build_context,
    create_app=create_app,
    port_variable="TUSK_TRIGGER_PORT",
)
