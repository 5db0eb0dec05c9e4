"""What the trigger consumes: finished commits (to start jobs) and the scheduler's job news."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from tusk.events.consumer import Handler
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
    async def handle(session: AsyncSession, _envelope: Envelope, data: EventData) -> None:
        if isinstance(data, CommitFinished):
            await service.on_commit_finished(session, data)
        elif isinstance(data, JobStarted | JobProgress | JobSucceeded | JobFailed):
            await service.on_job_event(session, data)

    return handle
