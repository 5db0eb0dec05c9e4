from __future__ import annotations

from fastapi import APIRouter, Query

from tusk.auth.http import PrincipalDep
from tusk_trigger.api.deps import ContextDep, JobId
from tusk_trigger.schemas import ErrorBody, JobInfo, JobPage
from tusk_trigger.schemas import JobState as StateFilter

router = APIRouter(tags=["jobs"], responses={400: {"model": ErrorBody}, 404: {"model": ErrorBody}})


@router.get("/jobs", response_model=JobPage)
async def list_jobs(
    ctx: ContextDep,
    principal: PrincipalDep,
    pipeline: str | None = None,
    state: StateFilter | None = None,
    limit: int = Query(100, ge=1, le=1000),
    cursor: str | None = Query(None, max_length=100),
) -> JobPage:
    """Jobs, newest first (of the pipelines the caller may read)."""
    if pipeline is not None:
        principal.require("pipeline", pipeline, "reader")
    items, nxt = await ctx.service.list_jobs(
        pipeline=pipeline, state=state, limit=limit, cursor=cursor
    )
    items = [j for j in items if principal.can("pipeline", j.pipeline, "reader")]
    return JobPage(items=items, next_cursor=nxt)


@router.get("/jobs/{job}", response_model=JobInfo)
async def inspect_job(job: JobId, ctx: ContextDep, principal: PrincipalDep) -> JobInfo:
    """A job with its input commits, output commit and datum counts."""
    info = await ctx.service.inspect_job(job)
    principal.require("pipeline", info.pipeline, "reader")
    return info


@router.get("/jobs/{job}/wait", response_model=JobInfo)
async def wait_job(
    job: JobId,
    ctx: ContextDep,
    principal: PrincipalDep,
    seconds: float = Query(30.0, ge=0, le=300, alias="timeout", description="Seconds to wait"),
) -> JobInfo:
    """The job once it has ended, or as it is after ``timeout`` seconds (poll again)."""
    principal.require("pipeline", (await ctx.service.inspect_job(job)).pipeline, "reader")
    return await ctx.service.wait_job(job, seconds)


@router.post("/jobs/{job}/stop", response_model=JobInfo)
async def stop_job(job: JobId, ctx: ContextDep, principal: PrincipalDep) -> JobInfo:
    """Ask the scheduler to kill the job's workers; the job ends ``killed``."""
    principal.require("pipeline", (await ctx.service.inspect_job(job)).pipeline, "writer")
    return await ctx.service.stop_job(job)
