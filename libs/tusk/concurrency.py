"""Running a batch of independent jobs a few at a time; waiting for an event or a timeout;
work in a thread that outlives no caller."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

Job = Callable[[], Awaitable[None]]
T = TypeVar("T")


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


async def in_thread_to_the_end(func: Callable[..., T], *args: object) -> T:
    """``asyncio.to_thread``, except that a cancelled caller still waits for the thread to end.

    A thread cannot be stopped; a caller that returned on cancellation would leave its work
    running behind it (a write whose partial file the caller believes cleaned up)."""
    work = asyncio.ensure_future(asyncio.to_thread(func, *args))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await work
        raise
