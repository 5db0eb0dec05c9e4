"""tusk.client.batches: which files travel together, and the tar stream that carries them."""

from __future__ import annotations

import io
import itertools
import tarfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tusk.client import batches
from tusk.errors import InvalidArgument


@given(st.lists(st.integers(min_value=0, max_value=3 * batches.SMALL_FILE), max_size=60))
def test_split_keeps_every_file_once_within_the_limits(sizes: list[int]) -> None:
    files = list(enumerate(sizes))
    alone, batched = batches.split(files, lambda f: f[1])
    assert sorted(alone + [f for batch in batched for f in batch]) == files
    assert all(size >= batches.SMALL_FILE for _, size in alone)
    for batch in batched:
        assert batch
        assert all(size < batches.SMALL_FILE for _, size in batch)
        assert len(batch) <= batches.BATCH_FILES
        assert len(batch) == 1 or sum(size for _, size in batch) <= batches.BATCH_BYTES
    # In their given order, and a batch closes only when the next file would not fit.
    small = [f for f in files if f[1] < batches.SMALL_FILE]
    assert [f for batch in batched for f in batch] == small
    for batch, following in itertools.pairwise(batched):
        bytes_ = sum(size for _, size in batch) + following[0][1]
        assert len(batch) == batches.BATCH_FILES or bytes_ > batches.BATCH_BYTES


def test_split_closes_a_batch_at_the_file_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batches, "BATCH_FILES", 3)
    alone, batched = batches.split(range(7), lambda _: 1)
    assert alone == []
    assert batched == [[0, 1, 2], [3, 4, 5], [6]]


async def collect(batch: list[batches.Member], progress: list[int] | None = None) -> bytes:
    callback = None if progress is None else progress.append
    return b"".join([piece async for piece in batches.tar_stream(batch, callback)])


async def test_tar_stream_is_a_tar_of_the_files_with_the_declared_length(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batches, "PIECE", 4096)  # several pieces from a few small files
    contents = {f"/d/f{i}": bytes([i]) * (i * 700) for i in range(12)}
    pairs: list[tuple[str, bytes | Path]] = []
    for i, (path, data) in enumerate(contents.items()):
        if i % 2:
            pairs.append((path, data))
        else:
            local = tmp_path / f"f{i}"
            local.write_bytes(data)
            pairs.append((path, local))
    batch = batches.members(pairs)
    progress: list[int] = []
    body = await collect(batch, progress)
    assert len(body) == batches.stream_length(batch)
    assert sum(progress) == sum(len(d) for d in contents.values())
    assert len(progress) > 1
    with tarfile.open(fileobj=io.BytesIO(body)) as archive:
        read = {
            "/" + m.name: archive.extractfile(m).read()  # type: ignore[union-attr]
            for m in archive.getmembers()
        }
    assert read == contents


async def test_a_file_that_changed_size_fails_the_stream(tmp_path: Path) -> None:
    local = tmp_path / "grows"
    local.write_bytes(b"x" * 10)
    batch = batches.members([("/grows", local)])
    local.write_bytes(b"x" * 11)
    with pytest.raises(InvalidArgument, match="changed size while it was being uploaded"):
        await collect(batch)
