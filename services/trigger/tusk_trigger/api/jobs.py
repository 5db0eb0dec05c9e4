from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, Query

from tusk.auth.http import PrincipalDep
from tusk_trigger.api.deps import ContextDep, JobId
from tusk_trigger.context import Context
from tusk_trigger.schemas import TERMINAL_STATES, ErrorBody, JobInfo, JobPage
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
    async with ctx.db.session(write=False) as session:
        items, nxt = await ctx.service.list_jobs(
            session, pipeline=pipeline, state=state, limit=limit, cursor=cursor
        )
    items = [j for j in items if principal.can("pipeline", j.pipeline, "reader")]
    return JobPage(items=items, next_cursor=nxt)


@router.get("/jobs/{job}", response_model=JobInfo)
async def inspect_job(job: JobId, ctx: ContextDep, principal: PrincipalDep) -> JobInfo:
    """A job with its input commits, output commit and datum counts."""
    info = await _inspect(ctx, job)
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
    info = await _inspect(ctx, job)
    principal.require("pipeline", info.pipeline, "reader")
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while info.state not in TERMINAL_STATES:
                await asyncio.sleep(0.1)
                info = await _inspect(ctx, info.id)  # a short id is looked up once
    return info


@router.post("/jobs/{job}/stop", response_model=JobInfo)
async def stop_job(job: JobId, ctx: ContextDep, principal: PrincipalDep) -> JobInfo:
    """Ask the scheduler to kill the job's workers; the job ends ``killed``."""
    async with ctx.db.session() as session:
        info = await ctx.service.inspect_job(session, job)
        principal.require("pipeline", info.pipeline, "writer")
        return await ctx.service.stop_job(session, info.id)


async def _inspect(ctx: Context, job: str) -> JobInfo:
    async with ctx.db.session(write=False) as session:
        return await ctx.service.inspect_job(session, job)
