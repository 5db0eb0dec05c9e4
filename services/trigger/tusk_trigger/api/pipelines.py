from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response, status

from tusk.errors import PayloadTooLarge
from tusk_trigger.api.deps import ContextDep, PipelineName
from tusk_trigger.schemas import ErrorBody, PipelineInfo

router = APIRouter(
    tags=["pipelines"],
    responses={400: {"model": ErrorBody}, 404: {"model": ErrorBody}, 409: {"model": ErrorBody}},
)

_MAX_SPEC_BYTES = 1 << 20
_SPEC_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/yaml": {"schema": {"type": "string"}},
        },
        "description": "A pipeline spec (Pachyderm's field names), as JSON or YAML",
    }
}


async def _spec_text(request: Request) -> bytes:
    body = await request.body()
    if len(body) > _MAX_SPEC_BYTES:
        raise PayloadTooLarge(f"a pipeline spec is at most {_MAX_SPEC_BYTES} bytes")
    return body


@router.post(
    "/pipelines",
    status_code=status.HTTP_201_CREATED,
    response_model=PipelineInfo,
    openapi_extra=_SPEC_BODY,
)
async def create_pipeline(request: Request, ctx: ContextDep) -> PipelineInfo:
    """Create a pipeline and its output repo (named after it). If every input already has a
    commit, a first job runs at once."""
    return await ctx.service.create_pipeline(await _spec_text(request))


@router.put("/pipelines/{name}", response_model=PipelineInfo, openapi_extra=_SPEC_BODY)
async def update_pipeline(
    name: PipelineName,
    request: Request,
    ctx: ContextDep,
    reprocess: bool = Query(False, description="Also run the new version on the latest inputs"),
) -> PipelineInfo:
    """Store a new version of the pipeline."""
    return await ctx.service.update_pipeline(name, await _spec_text(request), reprocess=reprocess)


@router.get("/pipelines", response_model=list[PipelineInfo])
async def list_pipelines(ctx: ContextDep) -> list[PipelineInfo]:
    return await ctx.service.list_pipelines()


@router.get("/pipelines/{name}", response_model=PipelineInfo)
async def inspect_pipeline(name: PipelineName, ctx: ContextDep) -> PipelineInfo:
    return await ctx.service.inspect_pipeline(name)


@router.delete("/pipelines/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_pipeline(
    name: PipelineName,
    ctx: ContextDep,
    keep_repo: bool = Query(False, description="Keep the output repo and its commits"),
) -> Response:
    """Delete a pipeline (refused while other pipelines read its output); its running jobs
    are stopped and its output repo deleted unless ``keep_repo``."""
    await ctx.service.delete_pipeline(name, keep_repo=keep_repo)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/pipelines/{name}/stop", response_model=PipelineInfo)
async def stop_pipeline(name: PipelineName, ctx: ContextDep) -> PipelineInfo:
    """Stop triggering jobs; running jobs are cancelled."""
    return await ctx.service.set_state(name, "stopped")


@router.post("/pipelines/{name}/start", response_model=PipelineInfo)
async def start_pipeline(name: PipelineName, ctx: ContextDep) -> PipelineInfo:
    """Resume triggering; a job runs on the latest inputs if they changed while stopped."""
    return await ctx.service.set_state(name, "running")
