from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status

from tusk.auth.audit import set_audit_resource
from tusk.auth.http import PrincipalDep, require_role
from tusk.auth.principal import Principal
from tusk.errors import PayloadTooLarge
from tusk.openapi import body_schema
from tusk.pipelines.spec import PipelineSpec, load_spec
from tusk.wire.specs import PipelineVersionSpec
from tusk_trigger.api.access import check_may_define, make_owner
from tusk_trigger.api.deps import ContextDep, PipelineName
from tusk_trigger.schemas import ErrorBody, PipelineInfo
from tusk_trigger.service import input_branches

router = APIRouter(
    tags=["pipelines"],
    responses={400: {"model": ErrorBody}, 404: {"model": ErrorBody}, 409: {"model": ErrorBody}},
)

Reader = Depends(require_role("pipeline", "reader", "name"))
Writer = Depends(require_role("pipeline", "writer", "name"))
Owner = Depends(require_role("pipeline", "owner", "name"))

_MAX_SPEC_BYTES = 1 << 20
SPEC_SCHEMA, SPEC_DEFS = body_schema(PipelineSpec)
_SPEC_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": SPEC_SCHEMA},
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
async def create_pipeline(
    request: Request, ctx: ContextDep, principal: PrincipalDep
) -> PipelineInfo:
    """Create a pipeline and its output repo (named after it). If every input already has a
    commit, a first job runs at once. The caller must read every input repo, and owns the
    pipeline and its output repo."""
    text = await _spec_text(request)
    check_may_define(principal, text)
    spec = load_spec(text)
    async with ctx.db.session(write=False) as session:
        await ctx.service.check_new(session, spec)
    # What the repo service must do or tell comes first, outside the transaction below.
    await ctx.service.prepare_repos(spec, output=True)
    heads = await ctx.service.read_heads(input_branches(spec))
    async with ctx.db.session() as session:
        info = await ctx.service.create_pipeline(session, spec, heads)
    set_audit_resource(request.scope, f"pipeline:{info.name}")
    await make_owner(ctx, principal, info.name, info.output_repo)
    return info


@router.put("/pipelines/{name:qualified}", response_model=PipelineInfo, openapi_extra=_SPEC_BODY)
async def update_pipeline(
    name: PipelineName,
    request: Request,
    ctx: ContextDep,
    principal: Annotated[Principal, Depends(require_role("pipeline", "writer", "name"))],
    reprocess: bool = Query(False, description="Also run the new version on the latest inputs"),
) -> PipelineInfo:
    """Store a new version of the pipeline (writers of the pipeline who read its inputs)."""
    text = await _spec_text(request)
    check_may_define(principal, text)
    spec = load_spec(text)
    async with ctx.db.session(write=False) as session:
        await ctx.service.check_update(session, name, spec)
    await ctx.service.prepare_repos(spec, output=False)
    heads = await ctx.service.read_heads(input_branches(spec)) if reprocess else {}
    async with ctx.db.session() as session:
        return await ctx.service.update_pipeline(
            session, name, spec, reprocess=reprocess, heads=heads
        )


@router.get("/pipelines", response_model=list[PipelineInfo])
async def list_pipelines(ctx: ContextDep, principal: PrincipalDep) -> list[PipelineInfo]:
    """The pipelines the caller may read."""
    async with ctx.db.session(write=False) as session:
        pipelines = await ctx.service.list_pipelines(session)
    return [p for p in pipelines if principal.can("pipeline", p.name, "reader")]


@router.get("/pipelines/{name:qualified}", response_model=PipelineInfo, dependencies=[Reader])
async def inspect_pipeline(name: PipelineName, ctx: ContextDep) -> PipelineInfo:
    async with ctx.db.session(write=False) as session:
        return await ctx.service.inspect_pipeline(session, name)


@router.get(
    "/pipelines/{name:qualified}/versions/{version}",
    response_model=PipelineVersionSpec,
    dependencies=[Reader],
)
async def inspect_pipeline_version(
    name: PipelineName,
    ctx: ContextDep,
    version: Annotated[int, Path(ge=1, le=2**31 - 1, description="The pipeline version")],
) -> PipelineVersionSpec:
    """One version of the pipeline's spec, as stored when it was created or updated, with the
    digest its jobs name it by (the scheduler reads a job's spec here)."""
    async with ctx.db.session(write=False) as session:
        return await ctx.service.pipeline_version(session, name, version)


@router.delete(
    "/pipelines/{name:qualified}", status_code=status.HTTP_204_NO_CONTENT, dependencies=[Owner]
)
async def delete_pipeline(
    name: PipelineName,
    ctx: ContextDep,
    keep_repo: bool = Query(False, description="Keep the output repo and its commits"),
) -> Response:
    """Delete a pipeline (refused while other pipelines read its output); its running jobs
    are stopped and its output repo deleted unless ``keep_repo``."""
    async with ctx.db.session() as session:
        repos = await ctx.service.delete_pipeline(session, name)
    if not keep_repo:
        await ctx.service.delete_repos(repos)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/pipelines/{name:qualified}/stop", response_model=PipelineInfo, dependencies=[Writer])
async def stop_pipeline(name: PipelineName, ctx: ContextDep) -> PipelineInfo:
    """Stop triggering jobs; running jobs are cancelled."""
    async with ctx.db.session() as session:
        return await ctx.service.set_state(session, name, "stopped", heads={})


@router.post(
    "/pipelines/{name:qualified}/start", response_model=PipelineInfo, dependencies=[Writer]
)
async def start_pipeline(name: PipelineName, ctx: ContextDep) -> PipelineInfo:
    """Resume triggering; a job runs on the latest inputs if they changed while stopped."""
    async with ctx.db.session(write=False) as session:
        branches = await ctx.service.input_branches_of(session, name)
    heads = await ctx.service.read_heads(branches)
    async with ctx.db.session() as session:
        return await ctx.service.set_state(session, name, "running", heads)


_NAME = {"name": "$response.body#/name"}
LINKS: list[tuple[str, str, str, str, str, dict[str, str]]] = [
    ("post", "/v1/pipelines", "201", name, operation, _NAME)
    for name, operation in (
        ("InspectPipeline", "inspect_pipeline_v1_pipelines__name__get"),
        ("StopPipeline", "stop_pipeline_v1_pipelines__name__stop_post"),
        ("StartPipeline", "start_pipeline_v1_pipelines__name__start_post"),
        ("DeletePipeline", "delete_pipeline_v1_pipelines__name__delete"),
    )
]
"""What a created pipeline leads to (OpenAPI links)."""
