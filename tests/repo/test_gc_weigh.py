"""The collector's check of file records against the reachable keys: grouped by chunk list, it
must decide exactly what a check of each file on its own decides."""

from __future__ import annotations

import hashlib

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tusk.objectstore.chunks import ChunkedFile
from tusk_repo.gc import _Marked, _referenced, _weigh_files
from tusk_repo.trees import file_keys_of

PACK_SIZE = 1000


def digest(n: int) -> str:
    return hashlib.blake2b(str(n).encode(), digest_size=32).hexdigest()


@st.composite
def file_records(draw: st.DrawFn) -> list[tuple[str, int, bytes]]:
    """Small files packed in a few packs (at various offsets, some using a pack whole), and
    files of several chunks, some of them chunks that are also packs."""
    packs = [digest(1_000_000 + p) for p in range(draw(st.integers(1, 4)))]
    records: list[tuple[str, int, bytes]] = []
    for n in range(draw(st.integers(0, 40))):
        kind = draw(st.sampled_from(["piece", "piece", "whole", "multi"]))
        pack = draw(st.sampled_from(packs))
        if kind == "piece":
            size = draw(st.integers(1, PACK_SIZE - 1))
            offset = draw(st.integers(0, PACK_SIZE - size))
            stored = ChunkedFile(digest(n), size, ((pack, PACK_SIZE),), offset)
        elif kind == "whole":
            stored = ChunkedFile(digest(n), PACK_SIZE, ((pack, PACK_SIZE),))
        else:
            chunks = ((pack, PACK_SIZE), (digest(2_000_000 + n), 10))
            stored = ChunkedFile(digest(n), PACK_SIZE + 10, chunks)
        records.append((stored.hash, stored.size, stored.encode_chunks()))
    return records


def weigh_each(
    rows: list[tuple[str, int, bytes]], in_trees: list[bool], staged: set[str], below: float
) -> tuple[list[str], set[str], dict[str, tuple[int, list[tuple[str, int, int]]]]]:
    """The check file by file: (garbage, chunks used, sparse packs with their pieces)."""
    garbage: list[str] = []
    chunks: set[str] = set()
    packs: dict[str, tuple[int, list[tuple[str, int, int]]]] = {}
    whole: set[str] = set()
    for (name, size, blob), in_tree in zip(rows, in_trees, strict=True):
        if not in_tree and name not in staged:
            garbage.append(name)
            continue
        stored = ChunkedFile.decode(name, size, blob)
        chunks.update(h for h, _ in stored.chunks)
        if len(stored.chunks) == 1 and size < stored.chunks[0][1]:
            pack, pack_size = stored.chunks[0]
            packs.setdefault(pack, (pack_size, []))[1].append((name, stored.offset, size))
        else:
            whole.update(h for h, _ in stored.chunks)
    sparse = {
        pack: (size, pieces)
        for pack, (size, pieces) in packs.items()
        if pack not in whole and sum(p[2] for p in pieces) < below * size
    }
    return garbage, chunks, sparse


@settings(max_examples=300, deadline=None)
@given(
    rows=file_records(),
    data=st.data(),
    below=st.sampled_from([0.0, 0.3, 0.5, 1.0, 2.0]),
)
def test_grouped_check_decides_as_the_check_of_each_file(
    rows: list[tuple[str, int, bytes]], data: st.DataObject, below: float
) -> None:
    in_trees = [data.draw(st.booleans()) for _ in rows]
    staged = {name for name, _, _ in rows if data.draw(st.integers(0, 5)) == 0}
    marked = _Marked()
    garbage = _weigh_files(rows, np.array(in_trees, dtype=np.bool_), staged, marked, below)
    want_garbage, want_chunks, want_sparse = weigh_each(rows, in_trees, staged, below)
    assert sorted(garbage) == sorted(want_garbage)
    assert marked.chunks == want_chunks
    got_sparse = {
        pack: (size, sorted((p.file_hash, p.offset, p.size) for p in pieces))
        for pack, (size, pieces) in marked.sparse_packs.items()
    }
    assert got_sparse == {pack: (size, sorted(p)) for pack, (size, p) in want_sparse.items()}
    for _, pieces in marked.sparse_packs.values():
        for piece in pieces:
            assert piece.record == next(blob for name, _, blob in rows if name == piece.file_hash)


@given(
    reachable=st.lists(st.integers(0, 200), max_size=300),
    asked=st.lists(st.integers(0, 200), max_size=50),
)
def test_a_file_is_referenced_exactly_when_its_key_is_reachable(
    reachable: list[int], asked: list[int]
) -> None:
    """Keys come sorted with repeats (as the walk gives them), or not at all."""
    keys = np.sort(np.frombuffer(file_keys_of(digest(n) for n in reachable), dtype=np.uint64))
    found = _referenced(keys, [digest(n) for n in asked]).tolist()
    assert found == [n in set(reachable) for n in asked]
