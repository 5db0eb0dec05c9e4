"""The inference service's FastAPI application."""

from __future__ import annotations

import structlog
from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from tusk.about import add_about_route, describe
from tusk.api import add_common_middleware, install_error_handlers
from tusk.app import ServiceDefinition, service_app
from tusk.auth.http import PrincipalDep, public
from tusk.auth.verify import remote_verifier
from tusk.client.repo import RepoClient
from tusk.events.bus import EventBus
from tusk.limits import add_request_limits
from tusk.openapi import add_component_schemas
from tusk_inference.api import infer, models, v2
from tusk_inference.api.deps import ContextDep
from tusk_inference.config import InferenceSettings
from tusk_inference.context import Context, build_context

log = structlog.get_logger()

DESCRIPTION = """
Real-time inference on the ONNX models that pipelines commit to the repos, through the **Open
Inference Protocol v2** (the REST API of KServe, Triton and MLServer; Triton's binary tensor
extension included), so existing OIP clients work unmodified.

Each model follows a branch (`TUSK_MODELS="credit=train@master:/model.onnx"`): every new
commit there is loaded, warmed up and swapped in without dropping a request. Versions are
commit ids; recent ones stay addressable under `/versions/{commit}`. Every answer's
`parameters` carry its lineage: the model's commit, its global id and the data commits
upstream of it.
"""
PROBES = ("/v2/health/live", "/v2/health/ready")


def create_app(
    settings: InferenceSettings | None = None,
    context: Context | None = None,
    *,
    bus: EventBus | None = None,
    repos: RepoClient | None = None,
) -> FastAPI:
    """The app; with ``context`` it uses those clients instead of building its own, with
    ``bus`` an event bus shared with the other services of the process (embedded mode), with
    ``repos`` a client of the repo service to use (tests)."""
    settings = settings or (context.settings if context else InferenceSettings())
    app = service_app(
        "inference service",
        settings,
        context,
        lambda: build_context(settings, bus=bus, repos=repos),
        alone=context is None and bus is None,  # a process of its own (`uvicorn --factory`)
        ready=lambda built: {
            "repo_url": settings.repo_url,
            "models": {s.name: s.spec.source for s in built.registry.slots.values()},
        },
        # Out of the collector's sight, full collections stay short and so does the tail.
        freeze_gc=True,
        stopping="draining queued requests",
        title="tusk inference service",
        description=DESCRIPTION,
        # No OpenTelemetry here (metrics are Prometheus): skip FastAPI's per-request check.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_error_handlers(app)
    verifier = remote_verifier(
        settings.api_tokens, lambda: app.state.context.repos, settings.auth_cache_seconds
    )
    add_common_middleware(
        app,
        settings.api_tokens,
        public_paths=PROBES,
        verifier=verifier,
        metrics_public=settings.auth_metrics_public,
        docs_public=settings.auth_docs_public,
    )
    add_request_limits(app, settings)

    # The hot path first (routes are matched in order), as plain Starlette routes: FastAPI's
    # per-request dependency and parameter machinery would cost more than most models.
    # Liveness too: a constant answer with no dependency injection, no model and no repo
    # call, so a busy replica is never restarted for being slow to say it is alive.
    app.router.routes[:0] = [*infer.fast_routes(), *v2.fast_probe_routes()]
    app.include_router(infer.router)  # the same paths, for the OpenAPI schema only
    add_component_schemas(app, infer.REQUEST_DEFS)

    @app.get("/healthz", tags=["health"], dependencies=[Depends(public)])
    async def healthz() -> dict[str, str]:
        """200 while the process serves HTTP (the liveness probe): never depends on a model."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["health"],
        dependencies=[Depends(public)],
        responses={503: {"description": "a model's branch is unread or its first version loads"}},
    )
    async def readyz(ctx: ContextDep) -> Response:
        """The readiness probe: 200 once this replica has done what it can for every model
        (serves it, found no version of it yet, or failed to load it, each visible at
        ``/v2/models/{model}/ready``), 503 while it still reads a branch or loads a first
        version. A model missing everywhere keeps no replica out of its Service."""
        registry = ctx.registry
        if registry.settled:
            body = {
                "status": "ready",
                "models": {n: s.latest is not None for n, s in registry.slots.items()},
            }
            return JSONResponse(body)
        return JSONResponse(
            {"status": "loading", "error": registry.unsettled_reason()}, status_code=503
        )

    @app.get("/metrics", tags=["health"], response_class=Response)
    async def metrics(ctx: ContextDep, _: PrincipalDep) -> Response:
        return Response(ctx.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    app.include_router(v2.router)
    app.include_router(models.router)
    add_about_route(app, describe("inference", settings, uses_database=False))
    return app


SERVICE = ServiceDefinition(
    name="inference",
    build_context=build_context,
    create_app=create_app,
    port_variable="TUSK_INFERENCE_PORT",
)


def main() -> None:
    """``python -m tusk_inference``: one process, one worker, settings from ``TUSK_*``."""
    import logging

    import uvicorn

    settings = InferenceSettings()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.drain_seconds) or None,
    )
