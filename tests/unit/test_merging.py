"""The three-way tree merge against a model: three dicts of path → content hash."""

from __future__ import annotations

import asyncio
from collections.abc import Collection

from hypothesis import given, settings
from hypothesis import strategies as st

from tusk_repo import merging, trees

# Flat-ish trees: files at depth 1 or 2 under a few names, so that sides often touch the same
# paths; no path is both a file and a directory's prefix within one tree.
FILES = ["/a", "/b", "/d/x", "/d/y", "/e/z"]
tree = st.dictionaries(st.sampled_from(FILES), st.sampled_from(["h1", "h2", "h3"]), max_size=5)


class Memory:
    def __init__(self) -> None:
        self.nodes: dict[str, bytes] = {trees.EMPTY_TREE: trees.EMPTY_NODE}

    async def load(self, digest: str) -> trees.Node:
        return trees.decode_node(self.nodes[digest])

    async def blobs(self, digests: Collection[str]) -> dict[str, bytes]:
        return {d: self.nodes[d] for d in digests}

    async def build(self, files: dict[str, str]) -> str:
        result = await trees.merge(
            self.load, trees.EMPTY_TREE, [], [(p, h, 1) for p, h in files.items()]
        )
        self.nodes.update(result.new_nodes)
        return result.root

    async def files(self, root: str) -> dict[str, str]:
        return {p: e.hash async for p, e in trees.walk_files(self.load, root)}


def model(
    base: dict[str, str], ours: dict[str, str], theirs: dict[str, str], strategy: str | None
) -> tuple[dict[str, str], set[str]]:
    merged: dict[str, str] = {}
    conflicts: set[str] = set()
    for path in sorted(base.keys() | ours.keys() | theirs.keys()):
        b, o, t = base.get(path), ours.get(path), theirs.get(path)
        if o == t or b == t:
            chosen = o
        elif b == o:
            chosen = t
        else:
            conflicts.add(path)
            chosen = t if strategy == "theirs" else o
        if chosen is not None:
            merged[path] = chosen
    return merged, conflicts


@settings(max_examples=300, deadline=None)
@given(tree, tree, tree, st.sampled_from([None, "ours", "theirs"]))
def test_merge_matches_the_model(
    base: dict[str, str], ours: dict[str, str], theirs: dict[str, str], strategy: str | None
) -> None:
    async def check() -> None:
        mem = Memory()
        roots = [await mem.build(t) for t in (base, ours, theirs)]
        result = await merging.merge_trees(mem.blobs, *roots, strategy)  # type: ignore[arg-type]
        mem.nodes.update(result.new_nodes)
        expected, conflicts = model(base, ours, theirs, strategy)
        found = {p for p, _ in (result.conflicts if strategy is None else result.resolved)}
        # A conflict on a whole directory is reported at the directory: compare by file.
        assert {
            f for f in conflicts if not any(f == c or f.startswith(c + "/") for c in found)
        } == set()
        # And nothing is reported that the model does not see as a conflict.
        assert all(any(f == c or f.startswith(c + "/") for f in conflicts) for c in found)
        if strategy is not None:
            assert await mem.files(result.root) == expected
            # Equal trees are equal nodes: the merge's root is what building the result gives.
            assert result.root == await mem.build(expected)
        elif not conflicts:
            assert result.conflicts == []
            assert await mem.files(result.root) == expected
            assert result.root == await mem.build(expected)

    asyncio.run(check())
