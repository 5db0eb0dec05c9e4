from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, Query

from tusk.auth.http import PrincipalDep
from tusk.errors import NotFound
from tusk_trigger.api.deps import ContextDep, JobId
from tusk_trigger.context import Context
from tusk_trigger.schemas import TERMINAL_STATES, ErrorBody, JobInfo, JobPage, JobsDeleted
from tusk_trigger.schemas import JobState as StateFilter

router = APIRouter(
    tags=["jobs"],
    responses={400: {"model": ErrorBody}, 404: {"model": ErrorBody}, 409: {"model": ErrorBody}},
)


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


@router.post("/jobs/{job}/restart", response_model=JobInfo)
async def restart_job(job: JobId, ctx: ContextDep, principal: PrincipalDep) -> JobInfo:
    """Run an ended job's failed datums again: a new job on the same input commits (and the
    same global id) in which the datums already processed are skipped. 409 while the job
    runs, when nothing failed, or when a newer job of the pipeline exists. Asking again
    answers the same new job."""
    async with ctx.db.session() as session:
        info = await ctx.service.inspect_job(session, job)
        principal.require("pipeline", info.pipeline, "writer")
        return await ctx.service.restart_job(session, info.id)


@router.delete("/jobs/{job}", response_model=JobsDeleted)
async def delete_job(
    job: JobId,
    ctx: ContextDep,
    principal: PrincipalDep,
    cascade: bool = Query(
        False, description="Also delete the commits derived from its output, and their jobs"
    ),
) -> JobsDeleted:
    """Delete an ended job with its output commit, as `commit delete` deletes a commit: refused
    (409, naming them) while other commits derive from it, unless ``cascade``. What it
    processed is processed again by the pipeline's next job."""
    async with ctx.db.session(write=False) as session:
        info = await ctx.service.deletable_job(session, job)
    principal.require("pipeline", info.pipeline, "writer")
    dropped: list[tuple[str, str]] = []
    moved: list[str] = []
    if info.output_commit is not None:
        # The repo service first, outside any transaction here: if it refuses nothing is
        # deleted; if this request fails afterwards, asking again finds the commit gone.
        try:
            result = await ctx.repos.delete_commit(
                info.output_repo, info.output_commit, cascade=cascade
            )
        except NotFound:
            pass
        else:
            dropped = [(c.repo, c.commit) for c in result.dropped]
            moved = result.moved_branches
    async with ctx.db.session() as session:
        jobs = await ctx.service.forget_jobs(session, info, dropped)
    return JobsDeleted(
        jobs=jobs, dropped_commits=[f"{r}@{c}" for r, c in dropped], moved_branches=moved
    )


async def _inspect(ctx: Context, job: str) -> JobInfo:
    async with ctx.db.session(write=False) as session:
        return await ctx.service.inspect_job(session, job)
