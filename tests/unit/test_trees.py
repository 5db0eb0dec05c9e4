"""The Merkle tree against a model: a plain dict of path → content hash."""

from __future__ import annotations

import asyncio
from collections.abc import Collection

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tusk.errors import Conflict
from tusk_repo import trees, treewalk

NAMES = ["a", "b", "a-c"]  # "a-c" sorts before "a/…" as a string, after it in a walk
paths = st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map(lambda p: "/" + "/".join(p))
op = st.one_of(
    st.tuples(st.just("put"), paths, st.sampled_from(["h1", "h2", "h3"])),
    st.tuples(st.just("del"), paths, st.just("")),
)


class Memory:
    def __init__(self) -> None:
        self.nodes: dict[str, bytes] = {trees.EMPTY_TREE: trees.EMPTY_NODE}

    async def load(self, digest: str) -> trees.Node:
        return trees.decode_node(self.nodes[digest])

    async def blobs(self, digests: Collection[str]) -> dict[str, bytes]:
        return {d: self.nodes[d] for d in digests}


def apply_model(model: dict[str, str], ops: list[tuple[str, str, str]]) -> dict[str, str] | None:
    """What a commit should hold; None when the changes are contradictory (file vs directory)."""
    result = dict(model)
    for kind, path, value in ops:
        if kind == "del":
            result = {p: v for p, v in result.items() if p != path and not p.startswith(path + "/")}
        else:
            if any(p.startswith(path + "/") for p in result):
                return None  # a directory is in the way
            if any(path.startswith(p + "/") for p in result):
                return None  # a file is in the way
            result[path] = value
    return result


def stage(ops: list[tuple[str, str, str]]) -> tuple[list[str], list[tuple[str, str, int]]]:
    """What the staging table keeps: a delete drops earlier puts at or below its path."""
    deletes: dict[str, None] = {}
    puts: dict[str, str] = {}
    for kind, path, value in ops:
        if kind == "del":
            puts = {p: v for p, v in puts.items() if p != path and not p.startswith(path + "/")}
            deletes = {d: None for d in deletes if d != path and not d.startswith(path + "/")}
            deletes[path] = None
        else:
            puts[path] = value
    return list(deletes), [(p, v, len(v)) for p, v in puts.items()]


async def commit(mem: Memory, root: str, ops: list[tuple[str, str, str]]) -> trees.MergeResult:
    deletes, puts = stage(ops)
    result = await trees.merge(mem.load, root, deletes, puts)
    mem.nodes.update(result.new_nodes)
    return result


async def files(mem: Memory, root: str) -> dict[str, str]:
    return {p: e.hash async for p, e in trees.walk_files(mem.load, root)}


def expected_after(model: dict[str, str], ops: list[tuple[str, str, str]]) -> dict[str, str] | None:
    """The staged changes applied to the model: deletes, then puts (as finishing does)."""
    deletes, puts = stage(ops)
    after_deletes = apply_model(model, [("del", d, "") for d in deletes])
    assert after_deletes is not None
    return apply_model(after_deletes, [("put", p, v) for p, v, _ in puts])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(op, max_size=8), min_size=1, max_size=4))
def test_merge_matches_model(commits: list[list[tuple[str, str, str]]]) -> None:
    async def run() -> None:
        mem = Memory()
        root, model = trees.EMPTY_TREE, {}
        for ops in commits:
            expected = expected_after(model, ops)
            try:
                result = await commit(mem, root, ops)
            except Conflict:
                assert expected is None, (model, ops)
                continue
            assert expected is not None, (model, ops)
            assert await files(mem, result.root) == expected
            assert result.count == len(expected)
            assert result.size == sum(len(v) for v in expected.values())
            changes = await treewalk.diff(trees.one_by_one(mem.load), mem.blobs, root, result.root)
            # In the order of a depth-first walk: /a/b before /a-c.
            assert [c.path for c in changes] == sorted(
                (p for p in model.keys() | expected.keys() if model.get(p) != expected.get(p)),
                key=lambda p: p.split("/"),
            )
            for c in changes:
                assert c.change == (
                    "added"
                    if c.path not in model
                    else "deleted"
                    if c.path not in expected
                    else "modified"
                )
                assert (c.old.hash if c.old else None) == model.get(c.path)
                assert (c.new.hash if c.new else None) == expected.get(c.path)
            root, model = result.root, expected

    asyncio.run(run())


def test_equal_trees_share_a_root() -> None:
    async def run() -> None:
        mem = Memory()
        one = await commit(mem, trees.EMPTY_TREE, [("put", "/x/y", "h"), ("put", "/z", "h")])
        two = await commit(mem, trees.EMPTY_TREE, [("put", "/z", "h"), ("put", "/x/y", "h")])
        assert one.root == two.root
        emptied = await commit(mem, one.root, [("del", "/", "")])
        assert emptied.root == trees.EMPTY_TREE

    asyncio.run(run())


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("/", ["/"]),
        ("/*", ["/a", "/b"]),
        ("/a/*", ["/a/x.csv", "/a/y.txt"]),
        ("/**/*.csv", ["/a/x.csv", "/b/c/z.csv"]),
        ("/b/*/*", ["/b/c/z.csv"]),
    ],
)
def test_glob(pattern: str, expected: list[str]) -> None:
    async def run() -> list[str]:
        mem = Memory()
        result = await commit(
            mem,
            trees.EMPTY_TREE,
            [("put", "/a/x.csv", "1"), ("put", "/a/y.txt", "2"), ("put", "/b/c/z.csv", "3")],
        )
        return [p for p, _ in await trees.glob(mem.load, result.root, pattern)]

    assert asyncio.run(run()) == expected


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text(st.characters(exclude_categories=["Cs"]), min_size=1),
            st.sampled_from([trees.DIR, trees.FILE]),
            st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
            st.integers(0, 2**63 - 1),
            st.integers(0, 2**40),
        ),
        max_size=20,
    )
)
def test_nodes_encode_as_the_json_module_did(rows: list[tuple[str, str, str, int, int]]) -> None:
    """Node hashes are hashes of the encoding: a faster encoder must give the same bytes, or
    equal directories written before and after would no longer share a node."""
    import json

    legacy = json.dumps(
        [[n, "d" if k == trees.DIR else "f", h, s, c] for n, k, h, s, c in rows],
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    assert trees.encode_rows(rows) == legacy
    assert trees.decode_node(legacy).rows == tuple(rows)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text(st.sampled_from(['"', "\\", "]", ",", "[", "a", "\n", "é"]), min_size=1),
            st.sampled_from([trees.DIR, trees.FILE]),
            st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
            st.integers(0, 2**63 - 1),
            st.integers(0, 2**40),
        ),
        max_size=12,
        unique_by=lambda r: r[0],
    )
)
def test_a_node_splits_into_its_rows_whatever_the_names(
    rows: list[tuple[str, str, str, int, int]],
) -> None:
    """Comparisons split encoded nodes at '],["': names full of brackets, commas and quotes
    must not split a row."""
    rows.sort(key=lambda r: r[0])
    blob = trees.encode_rows(rows)
    raws = treewalk.raw_rows(blob)
    assert [treewalk.decode_row(raw) for raw in raws] == rows
    assert treewalk.join_rows(raws) == blob
    assert [treewalk.encode_row(row) for row in rows] == raws


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.tuples(
            # Names made of the pieces of the pattern: '","f","', '","d","' and hex digits.
            st.text(st.sampled_from(['"', "\\", ",", "f", "d", "0", "a", "[", "]"]), min_size=1),
            st.sampled_from([trees.DIR, trees.FILE]),
            st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
            st.integers(0, 2**63 - 1),
            st.integers(0, 2**40),
        ),
        max_size=12,
        unique_by=lambda r: r[0],
    )
)
def test_a_nodes_references_are_found_without_decoding_whatever_the_names(
    rows: list[tuple[str, str, str, int, int]],
) -> None:
    """Garbage collection trusts the packed references: they must be exactly the entries'
    subdirectory hashes and file keys, in order, even for names that spell the pattern."""
    rows.sort(key=lambda r: r[0])
    subdirs, keys = trees.node_refs(trees.encode_rows(rows))
    assert subdirs == bytes.fromhex("".join(h for _, k, h, _, _ in rows if k == trees.DIR))
    assert keys == trees.file_keys_of(h for _, k, h, _, _ in rows if k == trees.FILE)
    assert len(keys) == trees.FILE_KEY_BYTES * sum(1 for r in rows if r[1] == trees.FILE)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text(st.sampled_from(['"', "\\", ",", "f", "d", "0", "a", "[", "]"]), min_size=1),
            st.sampled_from([trees.DIR, trees.FILE]),
            st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
        ),
        min_size=1,
        max_size=12,
        unique_by=lambda r: r[0],
    ),
    st.data(),
)
def test_references_rewritten_for_replaced_rows_are_those_found_by_scanning(
    rows: list[tuple[str, str, str]], data: st.DataObject
) -> None:
    """A merge saves a spliced node with its references rewritten from ours': they must be
    what scanning the new encoding finds, or None where a row changed kind."""
    rows.sort(key=lambda r: r[0])
    old = [(name, kind, digest, 1, 1) for name, kind, digest in rows]
    chosen = data.draw(st.sets(st.integers(0, len(old) - 1), min_size=1))
    new = list(old)
    for i in chosen:
        kind = data.draw(st.sampled_from([old[i][1], old[i][1], trees.DIR, trees.FILE]))
        digest = data.draw(st.text(alphabet="0123456789abcdef", min_size=64, max_size=64))
        new[i] = (old[i][0], kind, digest, 1, 1)
    blob = trees.encode_rows(old)
    offsets, at = [], 3
    for raw in treewalk.raw_rows(blob):
        offsets.append(at)
        at += len(raw) + 4
    replaced = [(offsets[i], old[i][1], new[i][1], new[i][2]) for i in chosen]
    found = trees.replaced_refs(blob, trees.node_refs(blob), replaced)
    if any(old[i][1] != new[i][1] for i in chosen):
        assert found is None
    else:
        assert found == trees.node_refs(trees.encode_rows(new))
