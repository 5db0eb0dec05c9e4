"""``tusk.concurrency``: at most ``parallel`` at once, a failure cancels the rest; a thread
that outlives no caller."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from tusk.concurrency import bounded, in_thread_to_the_end, wait_event


async def test_at_most_parallel_jobs_run_at_once() -> None:
    running, most = 0, 0

    async def job() -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        running -= 1

    await bounded([job] * 12, 3)
    assert most == 3


async def test_a_failure_cancels_the_rest_and_pick_chooses_what_is_raised() -> None:
    finished: list[str] = []

    async def fails(error: Exception) -> None:
        raise error

    async def slow() -> None:
        await asyncio.sleep(5)
        finished.append("slow")

    first, second = ValueError("first"), KeyError("second")
    jobs = [lambda: fails(first), lambda: fails(second), slow]
    with pytest.raises(ValueError, match="first"):
        await bounded(jobs, 3)
    with pytest.raises(KeyError):
        await bounded(jobs, 3, pick=lambda errors: next(e for e in errors if e is second))
    assert finished == []


async def test_wait_event_returns_when_set_or_after_the_timeout() -> None:
    event = asyncio.Event()
    started = time.monotonic()
    assert await wait_event(event, 0.05) is False
    assert time.monotonic() - started >= 0.05
    asyncio.get_running_loop().call_later(0.01, event.set)
    started = time.monotonic()
    assert await wait_event(event, 10) is True
    assert time.monotonic() - started < 5


async def test_a_cancelled_caller_still_waits_for_its_thread_to_end() -> None:
    started, release = threading.Event(), threading.Event()
    ended: list[bool] = []

    def work() -> None:
        started.set()
        release.wait()
        ended.append(True)

    task = asyncio.create_task(in_thread_to_the_end(work))
    await asyncio.to_thread(started.wait)
    task.cancel()
    try:
        for _ in range(20):  # turns of the loop, not time: a plain to_thread is done after one
            await asyncio.sleep(0)
        assert not task.done()
    finally:
        release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ended == [True]
