"""job wait rides out a service that answers 5xx or cannot be reached for a while, and stops
at once on an answer that will not change."""

from __future__ import annotations

import asyncio

import pytest

from tusk.errors import NotFound, TuskError, Unavailable
from tusk_cli.jobwait import retrying


async def test_transient_failures_are_retried() -> None:
    failures = [Unavailable("trigger restarting"), TuskError("internal error")]
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if failures:
            raise failures.pop(0)
        return "job"

    deadline = asyncio.get_running_loop().time() + 300
    assert await retrying(flaky, deadline, "reading the job") == "job"
    assert calls == 3


async def test_a_user_error_is_not_retried() -> None:
    calls = 0

    async def missing() -> str:
        nonlocal calls
        calls += 1
        raise NotFound("job 9aaf5c00 not found")

    deadline = asyncio.get_running_loop().time() + 300
    with pytest.raises(NotFound):
        await retrying(missing, deadline, "reading the job")
    assert calls == 1


async def test_retrying_ends_at_the_deadline() -> None:
    async def down() -> str:
        raise Unavailable("cannot reach the trigger service")

    deadline = asyncio.get_running_loop().time()  # already reached
    with pytest.raises(Unavailable):
        await retrying(down, deadline, "reading the job")
