"""Globs run as a set of states over the tree: each directory is loaded once, whatever the
pattern, and the answers are those of the plain recursive definition."""

from __future__ import annotations

import asyncio
from fnmatch import fnmatchcase

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_trees import Memory, commit
from tusk.errors import InvalidArgument
from tusk_repo import trees


class CountingMemory(Memory):
    def __init__(self) -> None:
        super().__init__()
        self.loads = 0

    async def load(self, digest: str) -> trees.Node:
        self.loads += 1
        return await super().load(digest)


async def reference_glob(mem: Memory, root: str, pattern: str) -> list[str]:
    """The definition, by backtracking (exponential in the number of '**': tiny cases only)."""
    segments = [s for s in pattern.split("/") if s]
    top = await trees.lookup(mem.load, root, "/")
    assert top is not None
    found: set[str] = set()

    async def visit(path: str, entry: trees.Entry, rest: list[str]) -> None:
        if not rest:
            found.add(path or "/")
            return
        if entry.kind != trees.DIR:
            return
        head, tail = rest[0], rest[1:]
        children = (await mem.load(entry.hash)).entries
        if head == "**":
            await visit(path, entry, tail)
            for child in children:
                if child.kind == trees.DIR:
                    await visit(f"{path}/{child.name}", child, rest)
                elif not tail:
                    found.add(f"{path}/{child.name}")
            return
        for child in children:
            if fnmatchcase(child.name, head):
                await visit(f"{path}/{child.name}", child, tail)

    await visit("", top, segments)
    return sorted(found)


names = st.sampled_from(["a", "b", "ab", "c.csv"])
tree_paths = st.lists(names, min_size=1, max_size=4).map(lambda p: "/" + "/".join(p))
pattern_segments = st.sampled_from(["a", "b", "*", "?", "**", "*.csv", "[ab]", "a*"])
patterns = st.lists(pattern_segments, min_size=0, max_size=5).map(lambda p: "/" + "/".join(p))


@settings(max_examples=300, deadline=None)
@given(st.lists(tree_paths, min_size=1, max_size=8), patterns)
def test_glob_matches_the_recursive_definition(paths: list[str], pattern: str) -> None:
    async def run() -> None:
        mem = Memory()
        ops = [("put", p, "h") for p in paths]
        try:
            result = await commit(mem, trees.EMPTY_TREE, ops)
        except Exception:  # a file where a directory is wanted: not a tree to glob over
            return
        got = [p for p, _ in await trees.glob(mem.load, result.root, pattern)]
        assert got == await reference_glob(mem, result.root, pattern)

    asyncio.run(run())


def test_many_globstars_over_a_deep_path_load_each_directory_once() -> None:
    async def run() -> None:
        mem = CountingMemory()
        deep = "/" + "/".join(f"d{i}" for i in range(40)) + "/file.txt"
        result = await commit(mem, trees.EMPTY_TREE, [("put", deep, "h")])
        mem.loads = 0
        pattern = "/**/d1*/**/d2*/**/d3*/**/d3*/**/*.txt"  # five globstars
        matches = await trees.glob(mem.load, result.root, pattern)
        assert [p for p, _ in matches] == [deep]
        # 40 directories plus the root lookup; backtracking loaded them millions of times.
        assert mem.loads <= 42

    asyncio.run(run())


def test_globs_over_the_limits_are_refused_with_the_limit() -> None:
    with pytest.raises(InvalidArgument, match="the limit is 128"):
        trees.validate_glob("/" + "/".join(["a"] * 200))
    with pytest.raises(InvalidArgument, match="the limit is 4096"):
        trees.validate_glob("/" + "x" * 5000)
    with pytest.raises(InvalidArgument, match="the limit is"):
        trees.validate_glob("/**" * 2000)
    # Runs of '**' mean one '**': a thousand of them are one segment, not a hang.
    assert trees.validate_glob("/**" * 1000 + "/a") == ["**", "a"]
