"""``tusk.concurrency.bounded``: at most ``parallel`` at once; a failure cancels the rest."""

from __future__ import annotations

import asyncio

import pytest

from tusk.concurrency import bounded


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
