"""The three-way tree merge against a model: three dicts of path → content hash."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import TypeVar

from hypothesis import given, settings
from hypothesis import strategies as st

from tusk_repo import merging, trees, treewalk

# Flat-ish trees: files at depth 1 or 2 under a few names, so that sides often touch the same
# paths; no path is both a file and a directory's prefix within one tree.
FILES = ["/a", "/b", "/d/x", "/d/y", "/e/z"]
V = TypeVar("V")
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
    base: dict[str, V], ours: dict[str, V], theirs: dict[str, V], strategy: str | None
) -> tuple[dict[str, V], set[str]]:
    merged: dict[str, V] = {}
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


# --- wide directories: the byte-span comparison against the model ---------------------------

# A content hash and its size: most changes keep a row's length, the one of size 12 does not.
CONTENTS = [(f"{i:x}" * 64, size) for i, size in enumerate([5, 7, 7, 12])]
NAMES = [f"/d/f{i:02}" for i in range(24)] + ["/e/x", "/e/x],[", "/g"]
content = st.sampled_from(CONTENTS)
changes = st.dictionaries(st.sampled_from(NAMES), st.one_of(st.none(), content), max_size=8)
Files = dict[str, tuple[str, int]]


def changed(base: Files, edits: dict[str, tuple[str, int] | None]) -> Files:
    result = dict(base)
    for path, value in edits.items():
        if value is None:
            result.pop(path, None)
        else:
            result[path] = value
    return result


async def build_sized(mem: Memory, files: Files) -> str:
    result = await trees.merge(
        mem.load, trees.EMPTY_TREE, [], [(p, h, size) for p, (h, size) in files.items()]
    )
    mem.nodes.update(result.new_nodes)
    return result.root


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.sampled_from(NAMES), content, min_size=10),
    changes,
    changes,
    st.sampled_from([None, "ours", "theirs"]),
)
def test_merge_of_wide_directories_matches_the_model(
    base: Files,
    ours_edits: dict[str, tuple[str, int] | None],
    theirs_edits: dict[str, tuple[str, int] | None],
    strategy: str | None,
) -> None:
    """Directories of many rows where most changes keep a row's length (compared span by
    span) and some do not, or add and remove rows, or hold a name that ends in ``],[``."""
    ours, theirs = changed(base, ours_edits), changed(base, theirs_edits)

    async def check() -> None:
        mem = Memory()
        roots = [await build_sized(mem, t) for t in (base, ours, theirs)]
        result = await merging.merge_trees(mem.blobs, *roots, strategy)  # type: ignore[arg-type]
        mem.nodes.update(result.new_nodes)
        expected, conflicts = model(base, ours, theirs, strategy)
        if strategy is None and conflicts:
            assert result.conflicts
            return
        assert result.conflicts == []
        # Byte for byte the nodes building the expected tree from scratch gives.
        assert result.root == await build_sized(mem, expected)
        for digest, blob in result.new_nodes.items():
            assert trees.node_hash(blob) == digest
        # Spliced nodes are saved with references rewritten from ours': what a scan finds.
        for digest, splice in result.spliced.items():
            assert trees.node_hash(splice.blob) == splice.ours
            refs = trees.replaced_refs(splice.blob, trees.node_refs(splice.blob), splice.replaced)
            assert refs is None or refs == trees.node_refs(result.new_nodes[digest])

    asyncio.run(check())


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(NAMES), content, min_size=10), changes)
def test_diff_of_wide_directories_lists_every_changed_file(
    base: Files, edits: dict[str, tuple[str, int] | None]
) -> None:
    new = changed(base, edits)

    async def check() -> None:
        mem = Memory()
        old_root, new_root = await build_sized(mem, base), await build_sized(mem, new)
        found = await treewalk.diff(trees.one_by_one(mem.load), mem.blobs, old_root, new_root)
        expected = {
            path: "added" if path not in base else "deleted" if path not in new else "modified"
            for path in base.keys() | new.keys()
            if base.get(path) != new.get(path)
        }
        assert {c.path: c.change for c in found} == expected
        assert [c.path for c in found] == sorted(expected, key=treewalk.path_order)

    asyncio.run(check())
