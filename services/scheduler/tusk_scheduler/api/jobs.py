from __future__ import annotations

from collections.abc import Collection
from typing import Any

from fastapi import APIRouter, Depends, Query

from tusk.worker.protocol import log_path
from tusk_scheduler import store
from tusk_scheduler.api.deps import ContextDep, DatumId, JobId, job_reader
from tusk_scheduler.domain.live import live_datums, running_ids
from tusk_scheduler.schemas import (
    DatumInfo,
    DatumLog,
    DatumPage,
    DatumState,
    ErrorBody,
    JobInfo,
    LiveDatumLog,
    ShardInfo,
)
from tusk_scheduler.tables import DATUM_RUNNING, PENDING, DatumRow, JobRow, ShardRow

router = APIRouter(
    tags=["jobs"],
    responses={400: {"model": ErrorBody}, 403: {"model": ErrorBody}, 404: {"model": ErrorBody}},
    dependencies=[Depends(job_reader)],
)


@router.get("/jobs/{job}", response_model=JobInfo)
async def inspect_job(job: JobId, ctx: ContextDep) -> JobInfo:
    """A job's execution: state, datum counts, output and meta commits, shards."""
    async with ctx.db.session(write=False) as session:
        row = await store.get_job(session, job)
        shards = await store.shards_of(session, row.id)
    return _job_info(row, shards)


@router.get("/jobs/{job}/datums", response_model=DatumPage)
async def list_datums(
    job: JobId,
    ctx: ContextDep,
    state: DatumState | None = None,
    limit: int = Query(1000, ge=1, le=10_000),
    cursor: str | None = Query(
        None, pattern=r"^[0-9A-Za-z_-]{1,64}$", description="Continue after this datum id"
    ),
) -> DatumPage:
    """A job's datums by id, with state, attempts, inputs and outputs; a datum a worker is
    working on now is `running` (`state=running`: those only, on one page)."""
    async with ctx.db.session(write=False) as session:
        row = await store.get_job(session, job)
        shards = await store.shards_of(session, row.id)
    running = await running_ids(ctx.runner, row, shards)
    async with ctx.db.session(write=False) as session:
        if state == "running":
            return DatumPage(
                items=[
                    _datum_info(r, running)
                    for r in await store.datums_by_id(session, row.id, sorted(running))
                    if r.state == PENDING
                ],
                next_cursor=None,
            )
        rows = await store.datum_page(session, row.id, state=state, after=cursor, limit=limit + 1)
    page = rows[:limit]
    return DatumPage(
        items=[_datum_info(r, running) for r in page],
        next_cursor=page[-1].datum if len(rows) > limit else None,
    )


@router.get("/jobs/{job}/datums/{datum}", response_model=DatumInfo)
async def inspect_datum(job: JobId, datum: DatumId, ctx: ContextDep) -> DatumInfo:
    async with ctx.db.session(write=False) as session:
        row = await store.get_job(session, job)
        found = await store.get_datum(session, row.id, datum)
        shards = await store.shards_of(session, row.id)
    return _datum_info(found, await running_ids(ctx.runner, row, shards))


@router.get("/jobs/{job}/logs", response_model=list[DatumLog])
async def job_logs(job: JobId, ctx: ContextDep) -> list[DatumLog]:
    """The logs of every datum the job ran (skipped datums have none), by datum id."""
    async with ctx.db.session(write=False) as session:
        row = await store.get_job(session, job)
        datums = await store.datums_of(session, row.id)
    limit = ctx.settings.log_tail_bytes
    return [_datum_log(row, d, limit) for d in datums if d.log_tail is not None]


@router.get("/jobs/{job}/datums/{datum}/logs", response_model=DatumLog)
async def datum_logs(job: JobId, datum: DatumId, ctx: ContextDep) -> DatumLog:
    async with ctx.db.session(write=False) as session:
        row = await store.get_job(session, job)
        found = await store.get_datum(session, row.id, datum)
    return _datum_log(row, found, ctx.settings.log_tail_bytes)


@router.get("/jobs/{job}/live", response_model=list[LiveDatumLog])
async def live_logs(job: JobId, ctx: ContextDep) -> list[LiveDatumLog]:
    """The datums in the output of the job's workers now: those running, with their logs so
    far, and those that just ended there, with their state and last lines; each line numbered
    from the start of the datum's log. Empty unless the job is running. `tusk logs -f` polls it.
    """
    async with ctx.db.session(write=False) as session:
        row = await store.get_job(session, job)
        shards = await store.shards_of(session, row.id)
    return [
        LiveDatumLog.model_validate(
            {
                "job": row.id,
                "datum": live.datum.datum,
                "shard": live.shard,
                "state": live.datum.state,
                "first_line": live.datum.first_line,
                "lines": live.datum.lines,
            }
        )
        for live in await live_datums(ctx.runner, row, shards)
    ]


def _job_info(row: JobRow, shards: list[ShardRow]) -> JobInfo:
    return JobInfo.model_validate(
        {
            "id": row.id,
            "pipeline": row.pipeline,
            "version": row.version,
            "state": row.state,
            "reason": row.reason,
            "cancel_requested": row.cancel_reason is not None,
            "global_id": row.global_id,
            "inputs": row.inputs,
            "output_repo": row.output_repo,
            "output_branch": row.output_branch,
            "output_commit": row.output_commit,
            "meta_commit": row.meta_commit,
            "counts": row.counts,
            "created_at": row.created_at,
            "started_at": row.started_at,
            "finished_at": row.finished_at,
            "shards": [_shard_info(s) for s in shards],
        }
    )


def _shard_info(row: ShardRow) -> ShardInfo:
    return ShardInfo.model_validate(
        {
            "shard": row.shard,
            "attempt": row.attempt,
            "state": row.state,
            "handle": row.handle,
            "exit_code": row.exit_code,
            "detail": row.detail,
            "started_at": row.started_at,
            "finished_at": row.finished_at,
        }
    )


def _datum_info(row: DatumRow, running: Collection[str] = ()) -> DatumInfo:
    # A row says pending until the datum's result is in; its worker says whether it runs now.
    values: dict[str, Any] = {
        "job": row.job,
        "datum": row.datum,
        "state": DATUM_RUNNING if row.state == PENDING and row.datum in running else row.state,
        "attempts": row.attempts,
        "shard": row.shard,
        "inputs": row.inputs,
        "outputs": row.outputs,
        "error": row.error,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
    }
    return DatumInfo.model_validate(values)


def _datum_log(job: JobRow, row: DatumRow, limit: int) -> DatumLog:
    tail = row.log_tail or ""
    has_log = row.log_tail is not None and job.meta_commit is not None
    return DatumLog.model_validate(
        {
            "job": row.job,
            "datum": row.datum,
            "state": row.state,
            "log": tail,
            "truncated": limit > 0 and len(tail.encode()) >= limit,
            "full_log": (
                f"{job.output_repo}@{job.meta_commit}:{log_path(job.id, row.datum)}"
                if has_log
                else None
            ),
        }
    )
