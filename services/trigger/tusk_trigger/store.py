"""All of the trigger's SQL: pipelines (with their versions and cron schedules) and jobs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tusk import shortid
from tusk.db import insert_if_absent
from tusk_trigger.schemas import TERMINAL_STATES
from tusk_trigger.tables import (
    BranchScheduleRow,
    CronRow,
    JobRow,
    PipelineRow,
    PipelineVersionRow,
)

# --- pipelines -----------------------------------------------------------------------------


async def pipeline(session: AsyncSession, name: str, *, lock: bool = False) -> PipelineRow | None:
    return await session.get(PipelineRow, name, with_for_update=lock or None)


async def all_pipelines(session: AsyncSession) -> list[PipelineRow]:
    return list((await session.scalars(select(PipelineRow).order_by(PipelineRow.name))).all())


async def insert_pipeline(
    session: AsyncSession, name: str, document: dict[str, Any], now: datetime
) -> bool:
    """Version 1 of a new pipeline; False when one of that name exists."""
    inserted = await insert_if_absent(
        session,
        PipelineRow.__table__,
        {
            "name": name,
            "version": 1,
            "spec": document,
            "state": "running",
            "created_at": now,
            "updated_at": now,
        },
    )
    if inserted:
        add_version(session, name, 1, document, now)
    return inserted


def add_version(
    session: AsyncSession, name: str, version: int, document: dict[str, Any], now: datetime
) -> None:
    session.add(PipelineVersionRow(pipeline=name, version=version, spec=document, created_at=now))


async def pipeline_version(
    session: AsyncSession, name: str, version: int
) -> PipelineVersionRow | None:
    return await session.get(PipelineVersionRow, (name, version))


async def delete_pipeline(session: AsyncSession, row: PipelineRow) -> None:
    await session.delete(row)


async def replace_crons(session: AsyncSession, pipeline: str, rows: list[CronRow]) -> None:
    """The pipeline's cron schedules become ``rows``."""
    await session.execute(delete(CronRow).where(CronRow.pipeline == pipeline))
    session.add_all(rows)
    await session.flush()


async def due_crons(session: AsyncSession, now: datetime) -> list[CronRow]:
    """Schedules due by ``now`` of running pipelines."""
    rows = await session.scalars(
        select(CronRow)
        .join(PipelineRow, PipelineRow.name == CronRow.pipeline)
        .where(CronRow.next_tick_at <= now, PipelineRow.state == "running")
    )
    return list(rows.all())


async def cron_for_update(session: AsyncSession, pipeline: str, input_name: str) -> CronRow | None:
    return await session.get(CronRow, (pipeline, input_name), with_for_update=True)


async def replace_branch_schedules(
    session: AsyncSession, pipeline: str, rows: list[BranchScheduleRow]
) -> None:
    """The pipeline's cron branch triggers become ``rows``."""
    await session.execute(delete(BranchScheduleRow).where(BranchScheduleRow.pipeline == pipeline))
    session.add_all(rows)
    await session.flush()


async def due_branch_schedules(session: AsyncSession, now: datetime) -> list[BranchScheduleRow]:
    """Cron branch triggers of running pipelines that are due by ``now`` or were claimed and
    not finished (a crash between the claim and the jobs)."""
    rows = await session.scalars(
        select(BranchScheduleRow)
        .join(PipelineRow, PipelineRow.name == BranchScheduleRow.pipeline)
        .where(
            (BranchScheduleRow.next_tick_at <= now) | BranchScheduleRow.firing.is_not(None),
            PipelineRow.state == "running",
        )
    )
    return list(rows.all())


async def branch_schedule_for_update(
    session: AsyncSession, pipeline: str, input_name: str
) -> BranchScheduleRow | None:
    return await session.get(BranchScheduleRow, (pipeline, input_name), with_for_update=True)


# --- jobs ----------------------------------------------------------------------------------


async def insert_job(session: AsyncSession, values: dict[str, Any]) -> JobRow | None:
    """The new job; None when the pipeline version already has one on those inputs (the
    natural key), so a redelivered event creates nothing."""
    if not await insert_if_absent(session, JobRow.__table__, values):
        return None
    return await session.get(JobRow, values["id"])


async def job(session: AsyncSession, job_id: str, *, lock: bool = False) -> JobRow | None:
    return await session.get(JobRow, job_id, with_for_update=lock or None)


async def expand_job_id(session: AsyncSession, prefix: str) -> str | None:
    return await shortid.expand(session, JobRow.id, prefix, kind="job")


async def job_by_key(
    session: AsyncSession, pipeline: str, version: int, key: str
) -> JobRow | None:
    return await session.scalar(
        select(JobRow).where(
            JobRow.pipeline == pipeline, JobRow.version == version, JobRow.input_key == key
        )
    )


async def last_job(session: AsyncSession, pipeline: str) -> JobRow | None:
    return await session.scalar(
        select(JobRow)
        .where(JobRow.pipeline == pipeline)
        .order_by(JobRow.created_at.desc())
        .limit(1)
    )


async def newest_jobs(session: AsyncSession) -> dict[str, JobRow]:
    """Each pipeline's newest job, in one query rather than one per pipeline."""
    ranked = select(
        JobRow.id,
        func.row_number()
        .over(partition_by=JobRow.pipeline, order_by=JobRow.created_at.desc())
        .label("rank"),
    ).subquery()
    jobs = await session.scalars(
        select(JobRow).join(ranked, JobRow.id == ranked.c.id).where(ranked.c.rank == 1)
    )
    return {job.pipeline: job for job in jobs}


async def active_jobs(session: AsyncSession, pipeline: str) -> list[JobRow]:
    rows = await session.scalars(
        select(JobRow).where(JobRow.pipeline == pipeline, JobRow.state.not_in(TERMINAL_STATES))
    )
    return list(rows.all())


async def jobs_page(
    session: AsyncSession,
    *,
    pipeline: str | None,
    state: str | None,
    limit: int,
    after: tuple[datetime, str] | None,
) -> list[JobRow]:
    """Up to ``limit`` jobs newest first; ``after``: the (created_at, id) the last page ended on."""
    query = select(JobRow)
    if pipeline is not None:
        query = query.where(JobRow.pipeline == pipeline)
    if state is not None:
        query = query.where(JobRow.state == state)
    if after is not None:
        at, last_id = after
        query = query.where(
            (JobRow.created_at < at) | ((JobRow.created_at == at) & (JobRow.id < last_id))
        )
    rows = await session.scalars(
        query.order_by(JobRow.created_at.desc(), JobRow.id.desc()).limit(limit)
    )
    return list(rows.all())


async def delete_job(session: AsyncSession, job_id: str) -> None:
    await session.execute(delete(JobRow).where(JobRow.id == job_id))


async def jobs_with_output(
    session: AsyncSession, commits: Sequence[tuple[str, str]]
) -> list[JobRow]:
    """The jobs whose output commit is one of these (repo, commit) pairs."""
    if not commits:
        return []
    ids = {commit for _, commit in commits}
    rows = await session.scalars(select(JobRow).where(JobRow.output_commit.in_(ids)))
    return [r for r in rows if (r.output_repo, r.output_commit) in set(commits)]
