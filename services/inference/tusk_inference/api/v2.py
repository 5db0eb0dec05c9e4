"""OIP v2 health, server and model metadata, readiness; Triton's repository index."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tusk import __version__
from tusk.auth.http import PrincipalDep
from tusk_inference.api.deps import ContextDep, ModelReader, Public
from tusk_inference.domain.registry import Slot, Version
from tusk_inference.schemas import (
    ErrorBody,
    MetadataTensor,
    ModelMetadata,
    ModelReady,
    Parameters,
    RepositoryEntry,
    ServerLive,
    ServerMetadata,
    ServerReady,
)

router = APIRouter(tags=["Open Inference Protocol v2"])

SERVER_NAME = "tusk-inference"
PLATFORM = "onnxruntime_onnx"
EXTENSIONS = ["binary_tensor_data", "parameters"]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}}
NOT_READY: dict[int | str, dict[str, Any]] = {
    400: {"description": "Not ready (OIP answers readiness with the status code)"},
    404: {"model": ErrorBody},
}


LIVE = b'{"live":true}'


async def _live(request: Request) -> Response:
    return Response(LIVE, media_type="application/json")


def fast_probe_routes() -> list[Route]:
    """Liveness as a plain route ahead of FastAPI's (which stays, for the OpenAPI schema)."""
    return [Route("/v2/health/live", _live, methods=["GET"]), Route("/healthz", _healthz)]


async def _healthz(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


@router.get("/v2/health/live", response_model=ServerLive, dependencies=[Public])
async def live() -> dict[str, bool]:
    """200 while the process serves HTTP: never depends on a model (the liveness probe)."""
    return {"live": True}


@router.get(
    "/v2/health/ready",
    response_model=ServerReady,
    dependencies=[Public],
    responses={400: {"description": "Some model has no version loaded"}},
)
async def ready(ctx: ContextDep) -> Any:
    """200 once every configured model serves a version, else 400 (as Triton and MLServer)."""
    if ctx.registry.ready:
        return {"ready": True}
    return JSONResponse({"ready": False, "error": ctx.registry.not_ready_reason()}, status_code=400)


@router.get("/v2", response_model=ServerMetadata)
async def server_metadata(_: PrincipalDep) -> ServerMetadata:
    return ServerMetadata(name=SERVER_NAME, version=__version__, extensions=EXTENSIONS)


@router.get(
    "/v2/models/{model}",
    response_model=ModelMetadata,
    responses=NOT_FOUND,
    dependencies=[ModelReader],
)
async def model_metadata(ctx: ContextDep, model: str) -> ModelMetadata:
    """The latest version's inputs and outputs; ``parameters`` has its lineage, how it runs,
    and the last load failure if there was one since."""
    slot = ctx.registry.slot(model)
    return _metadata(slot, slot.latest)


@router.get(
    "/v2/models/{model}/versions/{version}",
    response_model=ModelMetadata,
    responses=NOT_FOUND,
    dependencies=[ModelReader],
)
async def version_metadata(ctx: ContextDep, model: str, version: str) -> ModelMetadata:
    slot = ctx.registry.slot(model)
    return _metadata(slot, slot.resolve(version))


@router.get(
    "/v2/models/{model}/ready",
    response_model=ModelReady,
    responses=NOT_READY,
    dependencies=[ModelReader],
)
async def model_ready(ctx: ContextDep, model: str) -> Any:
    slot = ctx.registry.slot(model)
    return _ready(model, slot.latest is not None, slot)


@router.get(
    "/v2/models/{model}/versions/{version}/ready",
    response_model=ModelReady,
    responses=NOT_READY,
    dependencies=[ModelReader],
)
async def version_ready(ctx: ContextDep, model: str, version: str) -> Any:
    slot = ctx.registry.slot(model)
    return _ready(model, slot.has(version), slot)


@router.post(
    "/v2/repository/index",
    response_model=list[RepositoryEntry],
    responses={400: {"model": ErrorBody, "description": "The body is not a JSON object"}},
)
async def repository_index(
    ctx: ContextDep, principal: PrincipalDep, body: dict[str, Any] | None = Body(default=None)
) -> list[RepositoryEntry]:
    """Every model version held in memory, latest first, and each model that has none
    (Triton's model repository extension; ``{"ready": true}`` lists only loaded ones)."""
    only_ready = bool(body and body.get("ready"))
    entries = []
    for slot in ctx.registry.slots.values():
        if not principal.can("repo", slot.spec.repo, "reader"):
            continue
        if not slot.versions and not only_ready:
            entries.append(
                RepositoryEntry(
                    name=slot.name,
                    state="LOADING" if slot.loading else "UNAVAILABLE",
                    reason=slot.not_loaded_reason(),
                )
            )
        for commit in slot.listed():
            entries.append(RepositoryEntry(name=slot.name, version=commit, state="READY"))
    return entries


def _ready(model: str, ready: bool, slot: Slot) -> Any:
    if ready:
        return {"name": model, "ready": True}
    body = {"name": model, "ready": False}
    if slot.latest is None:
        body["error"] = slot.not_loaded_reason()
    return JSONResponse(body, status_code=400)


def _metadata(slot: Slot, version: Version | None) -> ModelMetadata:
    parameters: Parameters = {"source": slot.spec.source}
    inputs: list[MetadataTensor] = []
    outputs: list[MetadataTensor] = []
    if version is not None:
        engine = version.runner.engine
        inputs = [
            MetadataTensor(name=s.name, datatype=s.datatype, shape=list(s.shape))
            for s in engine.inputs
        ]
        outputs = [
            MetadataTensor(name=s.name, datatype=s.datatype, shape=list(s.shape))
            for s in engine.outputs
        ]
        parameters.update(version.lineage.parameters())
        parameters.update(
            {
                "latest": version is slot.latest,
                "loaded_at": version.loaded_at.isoformat(),
                "execution": engine.mode,
                "warmup_latency_ms": round(engine.latency * 1000, 4),
                "size_bytes": engine.size_bytes,
                "content_hash": engine.content_hash,
            }
        )
        if engine.mode == "batch":
            runner = version.runner
            assert runner.batcher is not None
            parameters["max_batch_rows"] = runner.batcher.max_rows
            parameters["max_batch_delay_ms"] = runner.batcher.max_delay * 1000
    state = "READY" if slot.latest is not None else ("LOADING" if slot.loading else "UNAVAILABLE")
    parameters["state"] = state
    if slot.loading:
        parameters["loading_commit"] = slot.loading
    if slot.last_failure is not None:
        parameters["last_error"] = slot.last_failure.error
        parameters["last_error_commit"] = slot.last_failure.commit
        parameters["last_error_at"] = slot.last_failure.at.isoformat()
    return ModelMetadata(
        name=slot.name,
        versions=slot.listed(),
        platform=PLATFORM,
        inputs=inputs,
        outputs=outputs,
        parameters=parameters,
    )
