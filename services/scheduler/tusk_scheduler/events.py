"""What the scheduler consumes (``job.created``, ``job.cancel``, ``job.deleted``) and how it
is recorded.

The handler runs in the consumer's transaction, together with the processed-event insert, and
only records: a new job row (idempotent by job id, so a redelivered ``job.created`` is
harmless even past the processed-events table), or a cancel request on the job's row. Running
the job is the dispatcher's business, woken once the transaction has committed, so that
handling an event never waits on a job and never blocks the partition.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from tusk.events.consumer import Handler
from tusk.events.envelope import Envelope, EventData
from tusk.events.outbox import call_after_commit
from tusk.events.types import JOBS_TOPIC, JobCancel, JobCreated, JobDeleted
from tusk_scheduler import store
from tusk_scheduler.domain.counts import empty_counts
from tusk_scheduler.tables import CREATED

log = structlog.get_logger()

GROUP = "tusk-scheduler"
TOPICS = (JOBS_TOPIC,)
TYPES = (JobCreated, JobCancel, JobDeleted)  # the scheduler's own job events share the topic


def make_handler(wake: Callable[[], None]) -> Handler:
    """The consumer's handler; ``wake`` (the dispatcher's) is called after each commit that
    recorded something for it to do."""

    async def handle(session: AsyncSession, _envelope: Envelope, data: EventData) -> None:
        if isinstance(data, JobCreated):
            if await record_job(session, data):
                call_after_commit(session, wake)
        elif isinstance(data, JobCancel) and await request_cancel(session, data):
            call_after_commit(session, wake)
        elif isinstance(data, JobDeleted):
            forgotten = await store.forget_job(session, data.job)
            log.info(
                "deleted job forgotten" if forgotten else "deleted job unknown here or running",
                job=data.job,
                pipeline=data.pipeline,
            )

    return handle


async def record_job(session: AsyncSession, data: JobCreated) -> bool:
    """Insert the job unless it is known; whether it was new."""
    inserted = await store.insert_job(
        session,
        {
            "id": data.job,
            "pipeline": data.pipeline,
            "version": data.version,
            "spec": data.spec,
            "inputs": [i.model_dump(mode="json") for i in data.inputs],
            "global_id": data.global_id,
            "output_repo": data.output_repo,
            "output_branch": data.output_branch,
            "state": CREATED,
            "counts": empty_counts(),
            "created_at": data.created_at,
        },
    )
    log.info(
        "job recorded" if inserted else "job already known", job=data.job, pipeline=data.pipeline
    )
    return inserted


async def request_cancel(session: AsyncSession, data: JobCancel) -> bool:
    """Mark an unfinished job for cancelling; whether there was such a job."""
    found = await store.request_cancel(session, data.job, data.reason or "stopped")
    log.info(
        "job cancel requested" if found else "job cancel ignored (unknown or finished)",
        job=data.job,
        pipeline=data.pipeline,
    )
    return found
