"""What the scheduler consumes (``job.created``, ``job.cancel``, ``job.deleted``) and how it
is recorded.

The handler runs in the consumer's transaction, together with the processed-event insert, and
only records: a new job row (idempotent by job id, so a redelivered ``job.created`` is
harmless even past the processed-events table), or a cancel request on the job's row. Running
the job is the dispatcher's business, woken once the transaction has committed, so that
handling an event never waits on a job and never blocks the partition.

``job.created`` names its spec (pipeline, version, digest) instead of carrying it. Before the
transaction (the consumer's ``prepare``) the spec is taken from those of recent versions kept in
memory, else found among the jobs already stored (the earlier jobs of the same version ran it),
else read from the trigger: one request per pipeline version, and on the warm path neither a
request nor a query. A spec that is gone (the pipeline deleted, or deleted and made
again with another spec under that version) fails the job, with that reason, instead of
running something else.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from tusk.client.pipelines import TriggerClient
from tusk.db import Database
from tusk.errors import Forbidden, NotFound, Unauthorized, Unavailable
from tusk.events.consumer import Handler, Prepare
from tusk.events.envelope import Envelope, EventData
from tusk.events.outbox import OutboxWriter, call_after_commit
from tusk.events.types import (
    JOBS_TOPIC,
    JobCancel,
    JobCreated,
    JobCreatedV1,
    JobDeleted,
    JobFailed,
)
from tusk.wire.jobs import DatumCounts
from tusk.wire.specs import runnable_spec, spec_digest
from tusk_scheduler import store
from tusk_scheduler.domain.counts import empty_counts
from tusk_scheduler.tables import CREATED

log = structlog.get_logger()

GROUP = "tusk-scheduler"
TOPICS = (JOBS_TOPIC,)
# the scheduler's own job events share the topic
TYPES = (JobCreated, JobCreatedV1, JobCancel, JobDeleted)
KNOWN_SPECS = 256  # pipeline versions whose spec the consumer keeps at hand


def make_handler(wake: Callable[[], None]) -> Handler:
    """The consumer's handler; ``wake`` (the dispatcher's) is called after each commit that
    recorded something for it to do."""

    async def handle(session: AsyncSession, _envelope: Envelope, data: EventData) -> None:
        if isinstance(data, JobCreatedV1):
            if await record_job(session, data, data.spec):
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


def make_prepare(
    db: Database, triggers: TriggerClient, outbox: OutboxWriter, wake: Callable[[], None]
) -> Prepare:
    """For ``job.created``: find the spec it names (before the transaction), and the handler
    that records the job with it."""

    # The specs of recent versions, by (pipeline, version, digest): the warm path (another job
    # of a version seen before) costs no query and no request.
    known: dict[tuple[str, int, str], dict[str, Any]] = {}

    async def prepare(_envelope: Envelope, data: EventData) -> Handler | None:
        if not isinstance(data, JobCreated):
            return None
        key = (data.pipeline, data.version, data.spec_digest)
        spec = known.get(key)
        if spec is None:
            async with db.session(write=False) as session:
                if await store.job_known(session, data.job):
                    return _known
                spec = await store.newest_spec_of_version(session, data.pipeline, data.version)
            if spec is None or spec_digest(spec) != data.spec_digest:
                spec = await read_spec(triggers, data)
            if spec is not None:
                if len(known) >= KNOWN_SPECS:
                    del known[next(iter(known))]  # the oldest
                known[key] = spec

        async def handle(session: AsyncSession, _envelope: Envelope, _data: EventData) -> None:
            if spec is None:
                await _spec_gone(session, outbox, data)
            elif await record_job(session, data, spec):
                call_after_commit(session, wake)

        return handle

    return prepare


async def read_spec(triggers: TriggerClient, data: JobCreated) -> dict[str, Any] | None:
    """The job's spec from the trigger; None when that version (with that digest) is gone."""
    try:
        version = await triggers.pipeline_version(data.pipeline, data.version)
    except NotFound:
        return None
    except (Unauthorized, Forbidden) as e:
        # A configuration error (TUSK_TOKEN): retried, so that fixing it loses no job.
        log.error(
            "the trigger refused to give a job's spec; check TUSK_TOKEN",
            job=data.job,
            pipeline=data.pipeline,
            error=e.message,
        )
        raise Unavailable(f"the trigger refused the spec of {data.pipeline!r}: {e.message}") from e
    if version.digest != data.spec_digest:
        return None
    log.info("job spec read from the trigger", pipeline=data.pipeline, version=data.version)
    return runnable_spec(version.spec)


async def _known(_session: AsyncSession, _envelope: Envelope, data: EventData) -> None:
    log.info("job already known", job=getattr(data, "job", None))


async def _spec_gone(session: AsyncSession, outbox: OutboxWriter, data: JobCreated) -> None:
    reason = (
        f"version {data.version} of pipeline {data.pipeline!r} is gone (the pipeline was "
        "deleted, or deleted and created again) before the job could start"
    )
    log.warning("job not run: its spec is gone", job=data.job, pipeline=data.pipeline)
    await outbox.add(
        session,
        JobFailed(
            job=data.job,
            pipeline=data.pipeline,
            output_commit=None,
            reason=reason,
            counts=DatumCounts(),
            finished_at=datetime.now(UTC),
        ),
    )


async def record_job(
    session: AsyncSession, data: JobCreated | JobCreatedV1, spec: dict[str, Any]
) -> bool:
    """Insert the job unless it is known; whether it was new."""
    inserted = await store.insert_job(
        session,
        {
            "id": data.job,
            "pipeline": data.pipeline,
            "version": data.version,
            "spec": spec,
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
