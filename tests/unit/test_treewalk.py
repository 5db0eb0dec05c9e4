"""Walking trees side by side a level at a time, reading ahead of the visits."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence

import pytest

from tusk_repo import treewalk


class Reads:
    """A loader of made-up nodes (each node is its own hash) that logs what happens when."""

    def __init__(self) -> None:
        self.log: list[str] = []

    async def load(self, digests: Collection[str]) -> dict[str, str]:
        self.log.append("read " + ",".join(sorted(digests)))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        self.log.append("done " + ",".join(sorted(digests)))
        return {d: d for d in digests}


def test_every_directory_is_visited_once_and_the_next_ones_are_read_meanwhile() -> None:
    reads = Reads()
    visited: list[str] = []

    def visit(key: str, nodes: Sequence[str | None]) -> list[tuple[str, treewalk.Sides]]:
        reads.log.append(f"visit {key}")
        visited.append(key)
        assert nodes == [f"{key}-old", f"{key}-new"]
        if len(key) == 1:  # the top level: two children each
            return [(f"{key}{i}", (f"{key}{i}-old", f"{key}{i}-new")) for i in range(2)]
        return []

    start = [(k, (f"{k}-old", f"{k}-new")) for k in "abc"]
    asyncio.run(treewalk.walk(reads.load, start, visit, per_read=2))
    assert visited == ["a", "b", "c", "a0", "a1", "b0", "b1", "c0", "c1"]
    # A level's first directories are read, then the next ones while those are visited.
    assert reads.log[:3] == [
        "read a-new,a-old,b-new,b-old",
        "done a-new,a-old,b-new,b-old",
        "visit a",
    ]
    assert reads.log.index("read c-new,c-old") < reads.log.index("visit b")
    assert reads.log.index("done c-new,c-old") < reads.log.index("visit c")


def test_a_failed_visit_lets_the_read_in_flight_end_and_raises_its_error() -> None:
    reads = Reads()

    def visit(key: str, nodes: Sequence[str | None]) -> list[tuple[str, treewalk.Sides]]:
        raise ValueError(key)

    start = [(k, (f"{k}-old", f"{k}-new")) for k in "ab"]
    with pytest.raises(ValueError, match="a"):
        asyncio.run(treewalk.walk(reads.load, start, visit, per_read=1))
    assert reads.log[-1] == "done b-new,b-old"
