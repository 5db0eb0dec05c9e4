"""Running a batch of independent jobs a few at a time; waiting for an event or a timeout."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence

Job = Callable[[], Awaitable[None]]


async def bounded(
    jobs: Sequence[Job],
    parallel: int,
    *,
    pick: Callable[[Sequence[BaseException]], BaseException] | None = None,
) -> None:
    """Run the jobs, ``parallel`` at a time; the first failure cancels the rest and is raised
    (``pick`` chooses among several; by default the first is the story, the others mostly its
    consequences)."""
    if len(jobs) == 1:
        await jobs[0]()
        return
    slots = asyncio.Semaphore(parallel)

    async def one(job: Job) -> None:
        async with slots:
            await job()

    try:
        async with asyncio.TaskGroup() as group:
            for job in jobs:
                group.create_task(one(job))
    except BaseExceptionGroup as failed:
        errors = failed.exceptions
        raise (pick(errors) if pick else errors[0]) from None


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait until ``event`` is set or ``seconds`` pass; whether it was set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
    return event.is_set()
