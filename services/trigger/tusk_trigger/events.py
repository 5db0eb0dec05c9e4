"""What the trigger consumes: finished commits (to start jobs) and the scheduler's job news."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from tusk.db import Database
from tusk.events.consumer import Handler, Prepare
from tusk.events.envelope import Envelope, EventData
from tusk.events.types import (
    COMMITS_TOPIC,
    JOBS_TOPIC,
    CommitFinished,
    JobFailed,
    JobProgress,
    JobStarted,
    JobSucceeded,
)
from tusk_trigger.service import TriggerService

GROUP = "tusk-trigger"
TOPICS = (COMMITS_TOPIC, JOBS_TOPIC)
# Not commit.started, branch.moved, job.created, …: passed over without a transaction.
TYPES = (CommitFinished, JobStarted, JobProgress, JobSucceeded, JobFailed)


def make_handler(service: TriggerService) -> Handler:
    """Job news, applied in the consumer's transaction."""

    async def handle(session: AsyncSession, _envelope: Envelope, data: EventData) -> None:
        if isinstance(data, JobStarted | JobProgress | JobSucceeded | JobFailed):
            await service.on_job_event(session, data)

    return handle


def make_prepare(service: TriggerService, db: Database) -> Prepare:
    """A finished commit: the heads of the triggered pipelines' other inputs are read from the
    repo service before the consumer's transaction opens, and the jobs created in it."""

    async def prepare(_envelope: Envelope, data: EventData) -> Handler | None:
        if not isinstance(data, CommitFinished):
            return None
        async with db.session(write=False) as session:
            branches = await service.branches_to_read(session, data)
            watches = await service.trigger_watches(session, data)
        # Branch triggers move their branches here, before the transaction (no HTTP under a
        # lock); a redelivered event finds them moved and still makes their jobs (once).
        fired = await service.fire_triggers(data, watches) if watches else []
        for moved in fired:
            async with db.session(write=False) as session:
                branches += await service.branches_to_read(session, moved)
        heads = await service.read_heads(branches)

        async def handle(session: AsyncSession, _envelope: Envelope, _data: EventData) -> None:
            await service.on_commit_finished(session, data, heads)
            for moved in fired:
                await service.on_commit_finished(session, moved, heads)

        return handle

    return prepare
