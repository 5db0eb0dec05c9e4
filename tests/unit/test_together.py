"""``together``: a start's independent steps run at once, and a failure lets the others end
(a cancelled commit request would still be carried out by the repo service, unseen)."""

from __future__ import annotations

import asyncio

import pytest

from tusk_scheduler.domain.job import together


async def test_a_failure_lets_the_other_steps_end_then_is_raised() -> None:
    ended: list[str] = []

    async def fails() -> None:
        raise ValueError("output commit refused")

    async def slower() -> str:
        for _ in range(5):  # a request under way: several turns of the loop
            await asyncio.sleep(0)
        ended.append("meta commit opened")
        return "meta"

    with pytest.raises(ValueError, match="output commit refused"):
        await together(fails(), slower())
    assert ended == ["meta commit opened"]


async def test_results_come_in_the_steps_order() -> None:
    async def value(v: int) -> int:
        await asyncio.sleep(0)
        return v

    assert await together(value(1), value(2), value(3)) == [1, 2, 3]
