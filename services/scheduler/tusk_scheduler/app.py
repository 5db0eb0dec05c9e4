"""The scheduler service's FastAPI application: health, metrics and read-only job detail.

The real work happens in the background of the lifespan: the consumer records jobs from
``job.created``, the dispatcher executes them, the relay publishes what they emit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from tusk import __version__
from tusk.about import add_about_route, describe
from tusk.api import add_common_middleware, add_health_routes, install_error_handlers
from tusk.app import ServiceAPI, ServiceDefinition
from tusk.auth.http import PrincipalDep
from tusk.auth.verify import remote_verifier
from tusk.events.bus import EventBus
from tusk.events.parking import add_outbox_routes
from tusk.events.relay import OutboxRelay
from tusk.limits import add_request_limits
from tusk.logging import configure_logging
from tusk_scheduler import store
from tusk_scheduler.api import jobs
from tusk_scheduler.api import runner as runner_api
from tusk_scheduler.api import spouts as spouts_api
from tusk_scheduler.api.deps import ContextDep
from tusk_scheduler.config import SchedulerSettings
from tusk_scheduler.context import Context, build_context
from tusk_scheduler.runners.base import Runner

log = structlog.get_logger()

DESCRIPTION = """
The scheduler runs the **jobs** the trigger creates: it splits a job's inputs into **datums**,
skips those an earlier job of the same pipeline version processed, runs the rest in
**shards** (one worker each) and finishes the job's output commit. This API shows how a job is
executing; pipelines and job lists are the trigger's.
"""


def create_app(
    settings: SchedulerSettings | None = None,
    context: Context | None = None,
    *,
    bus: EventBus | None = None,
    runner: Runner | None = None,
) -> FastAPI:
    """The app; with ``context`` it uses it instead of building its own, with ``bus`` an event
    bus shared with other services of the process (embedded mode)."""
    settings = settings or (context.settings if context else SchedulerSettings())
    if context is None and bus is None:  # a process of its own (`uvicorn --factory`)
        configure_logging(settings.log_level, json=settings.log_json)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if context is not None:
            app.state.context = context
            yield
            return
        async with build_context(settings, bus=bus, runner=runner) as built:
            app.state.context = built
            log.info(
                "scheduler service ready", repo_url=settings.repo_url, runner=built.runner.kind
            )
            yield
        log.info("scheduler service stopped")

    app = ServiceAPI(  # p%2Fx one segment, as in the services that service_app() makes
        title="tusk scheduler service",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    if context is not None:
        app.state.context = context
    install_error_handlers(app)
    verifier = remote_verifier(
        settings.api_tokens, lambda: app.state.context.repos, settings.auth_cache_seconds
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
    add_about_route(app, describe("scheduler", settings, extra={"runner": settings.runner}))
    add_outbox_routes(app, _relay, serve_metrics=False)

    @app.get("/metrics", tags=["health"], response_class=Response)
    async def metrics(ctx: ContextDep, _: PrincipalDep) -> Response:
        async with ctx.db.session(write=False) as session:
            ctx.metrics.set_jobs(await store.jobs_by_state(session))
        ctx.metrics.leader.set(1 if ctx.leadership.leading else 0)
        return Response(ctx.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    app.include_router(jobs.router, prefix="/v1")
    app.include_router(runner_api.router, prefix="/v1")
    app.include_router(spouts_api.router, prefix="/v1")
    return app


def _relay(request: Request) -> OutboxRelay:
    relay: OutboxRelay = request.app.state.context.relay
    return relay


SERVICE = ServiceDefinition(
    name="scheduler",
    build_context=build_context,
    create_app=create_app,
    port_variable="TUSK_SCHEDULER_PORT",
)
