"""SQL for the scheduler's tables. Functions take the caller's session and only flush; the
unit of work that opened the session commits. Rows and plain values in, rows and plain values
out: what they mean is the domain's business (this module imports nothing above ``tables``)."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from tusk import shortid
from tusk.db import insert_for, insert_if_absent
from tusk.errors import NotFound
from tusk_scheduler.tables import (
    ACTIVE_STATES,
    FINAL_STATES,
    DatumRow,
    JobRow,
    ProcessedDatumRow,
    ShardRow,
)

JOB_ID_LENGTH = 32
DATUM_ID_LENGTH = 64
_IN_CHUNK = 1000  # ids per IN (...) list: well below every dialect's bound-parameter limit


@dataclass(frozen=True)
class ActiveJob:
    id: str
    pipeline: str
    state: str
    cancel_reason: str | None


async def get_job(session: AsyncSession, job: str) -> JobRow:
    """A job by id or unique prefix (``shortid``)."""
    if shortid.is_prefix(job, JOB_ID_LENGTH):
        job = await shortid.expand(session, JobRow.id, job, kind="job") or job
    row = await session.scalar(select(JobRow).where(JobRow.id == job))
    if row is None:
        raise NotFound(f"job {job} not found (the scheduler knows the jobs it was given)")
    return row


async def active_jobs(session: AsyncSession) -> list[ActiveJob]:
    """Unfinished jobs, oldest first."""
    rows = await session.execute(
        select(JobRow.id, JobRow.pipeline, JobRow.state, JobRow.cancel_reason)
        .where(JobRow.state.in_(ACTIVE_STATES))
        .order_by(JobRow.seq)
    )
    return [ActiveJob(*row) for row in rows.all()]


async def insert_job(session: AsyncSession, values: Mapping[str, Any]) -> bool:
    """Insert a job row unless one with its id exists; whether it was inserted."""
    return await insert_if_absent(session, JobRow.__table__, dict(values))


async def job_known(session: AsyncSession, job: str) -> bool:
    return (await session.scalar(select(JobRow.seq).where(JobRow.id == job))) is not None


async def newest_spec_of_version(
    session: AsyncSession, pipeline: str, version: int
) -> dict[str, Any] | None:
    """The spec of the newest job of that pipeline version (its earlier jobs ran the same one,
    unless the pipeline was deleted and created again meanwhile: the caller checks)."""
    spec = await session.scalar(
        select(JobRow.spec)
        .where(JobRow.pipeline == pipeline, JobRow.version == version)
        .order_by(JobRow.seq.desc())
        .limit(1)
    )
    return cast("dict[str, Any] | None", spec)


async def request_cancel(session: AsyncSession, job: str, reason: str) -> bool:
    """Mark an unfinished job not yet marked for cancelling; whether there was such a job."""
    result = await session.execute(
        update(JobRow)
        .where(JobRow.id == job, JobRow.state.in_(ACTIVE_STATES), JobRow.cancel_reason.is_(None))
        .values(cancel_reason=reason)
    )
    return bool(getattr(result, "rowcount", 0))


async def update_job(
    session: AsyncSession, job: str, *, expect: Sequence[str] | None = None, **values: Any
) -> bool:
    """Update a job's row, only while it is in one of the ``expect`` states (if given)."""
    stmt = update(JobRow).where(JobRow.id == job).values(**values)
    if expect is not None:
        stmt = stmt.where(JobRow.state.in_(expect))
    result = await session.execute(stmt)
    return bool(getattr(result, "rowcount", 0))


async def jobs_by_state(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(select(JobRow.state, func.count()).group_by(JobRow.state))
    return {state: int(n) for state, n in rows.all()}


# --- datums ----------------------------------------------------------------------------------


async def insert_datums(
    session: AsyncSession, rows: Sequence[Mapping[str, Any]], *, skip_existing: bool = False
) -> None:
    if not rows:
        return
    # Core, not ORM: twice as fast for the thousands of rows of a large job.
    table = cast(Table, DatumRow.__table__)
    stmt = insert_for(session, table).on_conflict_do_nothing() if skip_existing else table.insert()
    await session.execute(stmt, list(rows))


async def datums_of(
    session: AsyncSession,
    job: str,
    *,
    states: Iterable[str] | None = None,
    shard: int | None = None,
) -> list[DatumRow]:
    stmt = select(DatumRow).where(DatumRow.job == job)
    if states is not None:
        stmt = stmt.where(DatumRow.state.in_(list(states)))
    if shard is not None:
        stmt = stmt.where(DatumRow.shard == shard)
    return list((await session.scalars(stmt.order_by(DatumRow.datum))).all())


async def datum_page(
    session: AsyncSession, job: str, *, state: str | None, after: str | None, limit: int
) -> list[DatumRow]:
    stmt = select(DatumRow).where(DatumRow.job == job)
    if state is not None:
        stmt = stmt.where(DatumRow.state == state)
    if after is not None:
        stmt = stmt.where(DatumRow.datum > after)
    return list((await session.scalars(stmt.order_by(DatumRow.datum).limit(limit))).all())


async def datums_by_id(session: AsyncSession, job: str, datums: Sequence[str]) -> list[DatumRow]:
    """The job's datums of these ids (a few: those running now), by id."""
    if not datums:
        return []
    stmt = select(DatumRow).where(DatumRow.job == job, DatumRow.datum.in_(list(datums)))
    return list((await session.scalars(stmt.order_by(DatumRow.datum))).all())


async def get_datum(session: AsyncSession, job: str, datum: str) -> DatumRow:
    """A job's datum by id or unique prefix (the CLI shows 16 characters)."""
    if shortid.is_prefix(datum, DATUM_ID_LENGTH):
        datum = (
            await shortid.expand(session, DatumRow.datum, datum, DatumRow.job == job, kind="datum")
            or datum
        )
    row = await session.get(DatumRow, (job, datum))
    if row is None:
        raise NotFound(f"datum {datum} not found in job {job}")
    return row


async def update_datum(session: AsyncSession, job: str, datum: str, **values: Any) -> None:
    await session.execute(
        update(DatumRow).where(DatumRow.job == job, DatumRow.datum == datum).values(**values)
    )


async def datum_states(session: AsyncSession, job: str) -> dict[str, int]:
    """How many of the job's datums are in each state."""
    rows = await session.execute(
        select(DatumRow.state, func.count()).where(DatumRow.job == job).group_by(DatumRow.state)
    )
    return {state: int(n) for state, n in rows.all()}


async def record_results(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
    """Update datum rows from worker results; each row names its ``job`` and ``datum``."""
    if rows:
        # An ORM bulk UPDATE by primary key (job, datum): one statement, many rows.
        await session.execute(update(DatumRow), list(rows))


# --- shards ----------------------------------------------------------------------------------


async def insert_shards(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
    if rows:
        await session.execute(cast(Table, ShardRow.__table__).insert(), list(rows))


async def shards_of(session: AsyncSession, job: str) -> list[ShardRow]:
    stmt = select(ShardRow).where(ShardRow.job == job).order_by(ShardRow.shard)
    return list((await session.scalars(stmt)).all())


async def update_shard(session: AsyncSession, job: str, shard: int, **values: Any) -> None:
    await session.execute(
        update(ShardRow).where(ShardRow.job == job, ShardRow.shard == shard).values(**values)
    )


# --- processed datums (incremental processing) -----------------------------------------------


async def processed_outputs(
    session: AsyncSession, pipeline: str, identity: str, datums: Sequence[str]
) -> dict[str, list[dict[str, Any]]]:
    """The outputs of those ``datums`` that a job of this pipeline processed with the same
    datum identity (``PipelineSpec.datum_identity()``), whichever version it ran."""
    found: dict[str, list[dict[str, Any]]] = {}
    t = ProcessedDatumRow
    for start in range(0, len(datums), _IN_CHUNK):
        rows = await session.execute(
            select(t.datum, t.outputs).where(
                t.pipeline == pipeline,
                t.identity == identity,
                t.datum.in_(datums[start : start + _IN_CHUNK]),
            )
        )
        found.update(dict(rows.all()))
    return found


async def record_processed(
    session: AsyncSession,
    pipeline: str,
    version: int,
    identity: str,
    job: str,
    outputs: Mapping[str, list[dict[str, Any]]],
) -> None:
    """Remember that ``job`` processed these datums (id → outputs) successfully."""
    if not outputs:
        return
    stmt = insert_for(session, ProcessedDatumRow.__table__)
    stmt = stmt.on_conflict_do_update(
        index_elements=["pipeline", "version", "datum"],
        set_={
            "outputs": stmt.excluded.outputs,
            "job": stmt.excluded.job,
            "identity": stmt.excluded.identity,
        },
    )
    await session.execute(
        stmt,
        [
            {
                "pipeline": pipeline,
                "version": version,
                "identity": identity,
                "datum": datum,
                "outputs": files,
                "job": job,
            }
            for datum, files in outputs.items()
        ],
    )


async def forget_job(session: AsyncSession, job: str) -> bool:
    """Delete the job's records and the datums counted as processed by it (its outputs are
    gone); whether the job was known. A running job is left alone."""
    row = await session.scalar(select(JobRow).where(JobRow.id == job))
    if row is None or row.state not in FINAL_STATES:
        return False
    for table in (ProcessedDatumRow, DatumRow, ShardRow):
        await session.execute(delete(table).where(table.job == job))
    await session.execute(delete(JobRow).where(JobRow.id == job))
    return True


# The leader's lease (background/leadership.py): a PostgreSQL advisory lock held by one
# connection's session, so it ends when that connection does.
LEADER_LOCK_KEY = zlib.crc32(b"tusk scheduler leader")


async def try_leader_lock(connection: AsyncConnection) -> bool:
    """Take the leader's lock on this connection if no other session holds it."""
    got = await connection.scalar(select(func.pg_try_advisory_lock(LEADER_LOCK_KEY)))
    await connection.commit()  # the lock is the session's, not the transaction's
    return bool(got)


async def check_connection(connection: AsyncConnection) -> None:
    """Raise if the connection (and with it the lock it holds) is gone."""
    await connection.scalar(select(1))
    await connection.commit()
