from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from tusk.worker.protocol import log_path
from tusk_scheduler import store
from tusk_scheduler.api.deps import ContextDep, DatumId, JobId, job_reader
from tusk_scheduler.schemas import (
    DatumInfo,
    DatumLog,
    DatumPage,
    DatumState,
    ErrorBody,
    JobInfo,
    ShardInfo,
)
from tusk_scheduler.tables import DatumRow, JobRow, ShardRow

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
    """A job's datums by id, with state, attempts, inputs and outputs."""
    async with ctx.db.session(write=False) as session:
        job = (await store.get_job(session, job)).id
        rows = await store.datum_page(session, job, state=state, after=cursor, limit=limit + 1)
    page = rows[:limit]
    return DatumPage(
        items=[_datum_info(r) for r in page],
        next_cursor=page[-1].datum if len(rows) > limit else None,
    )


@router.get("/jobs/{job}/datums/{datum}", response_model=DatumInfo)
async def inspect_datum(job: JobId, datum: DatumId, ctx: ContextDep) -> DatumInfo:
    async with ctx.db.session(write=False) as session:
        job = (await store.get_job(session, job)).id
        return _datum_info(await store.get_datum(session, job, datum))


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
            "egress": row.egress,
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


def _datum_info(row: DatumRow) -> DatumInfo:
    values: dict[str, Any] = {
        "job": row.job,
        "datum": row.datum,
        "state": row.state,
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
