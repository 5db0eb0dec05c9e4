"""One contract for every ObjectStore: the local directory and S3 (versitygw)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.backing.s3 import S3Server
from tests.conftest import s3_settings
from tusk.errors import NotFound
from tusk.objectstore import ChunkStore, ObjectStore, open_object_store
from tusk.objectstore.chunks import ChunkedFile, chunk_key, hash_bytes
from tusk.settings import CommonSettings


@pytest.fixture(params=["local", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ObjectStore]:
    if request.param == "local":
        settings = CommonSettings(data_dir=tmp_path)
    else:
        s3: S3Server = request.getfixturevalue("s3")
        bucket = f"contract-{uuid.uuid4().hex[:12]}"
        s3.create_bucket(bucket)
        settings = CommonSettings(data_dir=tmp_path, **s3_settings(s3, bucket))  # type: ignore[arg-type]
    async with open_object_store(settings) as opened:
        yield opened


async def test_put_get_roundtrip(store: ObjectStore) -> None:
    await store.put("a/b/c", b"hello world")
    assert await store.get("a/b/c") == b"hello world"
    assert await store.exists("a/b/c")


async def test_ranges(store: ObjectStore) -> None:
    await store.put("r", bytes(range(100)))
    assert await store.get("r", 10, 20) == bytes(range(10, 20))
    assert await store.get("r", 90) == bytes(range(90, 100))
    assert await store.get("r", 5, 5) == b""


async def test_pieces_are_the_same_bytes(store: ObjectStore) -> None:
    data = os.urandom(3 << 20)  # more than one read of the connection, for S3
    await store.put("p", data)
    assert b"".join(await store.get_pieces("p")) == data
    assert b"".join(await store.get_pieces("p", 100, 2 << 20)) == data[100 : 2 << 20]
    assert b"".join(await store.get_pieces("p", 7, 7)) == b""
    with pytest.raises(NotFound):
        await store.get_pieces("missing")


async def test_missing_object(store: ObjectStore) -> None:
    assert not await store.exists("nope")
    with pytest.raises(NotFound):
        await store.get("nope")
    await store.delete("nope")  # deleting a missing object is fine


async def test_overwrite_and_delete(store: ObjectStore) -> None:
    await store.put("k", b"one")
    await store.put("k", b"two")
    assert await store.get("k") == b"two"
    await store.delete("k")
    assert not await store.exists("k")


async def test_list_keys_by_prefix(store: ObjectStore) -> None:
    for key in ("p/1", "p/2", "q/1"):
        await store.put(key, b"x")
    assert sorted([k async for k in store.list_keys("p/")]) == ["p/1", "p/2"]


async def test_empty_object(store: ObjectStore) -> None:
    await store.put("empty", b"")
    assert await store.get("empty") == b""


async def test_chunk_store_streams_and_deduplicates(store: ObjectStore) -> None:
    chunks = ChunkStore(store, chunk_size=64 * 1024, max_in_flight=3)
    data = bytes(range(256)) * 1024  # 256 KiB: four chunks

    async def pieces() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 10_000):  # pieces that do not line up with chunks
            yield data[i : i + 10_000]

    stored = await chunks.write_stream(pieces())
    assert stored.size == len(data)
    assert stored.hash == hash_bytes(data)
    assert len(stored.chunks) == 4
    # The four chunks are equal (the pattern repeats every 64 KiB): one object holds them all.
    assert len({h for h, _ in stored.chunks}) == 1
    assert await store.exists(chunk_key(stored.chunks[0][0]))
    assert b"".join([p async for p in chunks.read(stored.chunks)]) == data
    assert (
        b"".join([p async for p in chunks.read(stored.chunks, 65_000, 140_000)])
        == data[65_000:140_000]
    )


async def test_chunk_store_empty_file(store: ObjectStore) -> None:
    chunks = ChunkStore(store, chunk_size=64 * 1024)
    stored = await chunks.write_bytes(b"")
    assert stored.size == 0
    assert b"".join([p async for p in chunks.read(stored.chunks)]) == b""


async def test_chunk_store_failed_stream_raises_the_cause(store: ObjectStore) -> None:
    chunks = ChunkStore(store, chunk_size=64 * 1024)

    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * 100_000
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await chunks.write_stream(broken())


async def test_chunk_store_packs_small_files(store: ObjectStore) -> None:
    chunks = ChunkStore(store, chunk_size=64 * 1024)
    contents = [f"file {i}".encode() * 100 for i in range(100)]  # 69,000 bytes in all
    contents += [b"", bytes(range(256)) * 800]  # an empty file; one larger than a chunk
    stored = await chunks.write_many({hash_bytes(c): c for c in contents})
    assert len(stored) == len(contents)
    small = [f for f in stored.values() if f.size < 64 * 1024]
    assert len({f.chunks for f in small}) == 2  # 101 small files in two shared chunks
    for content in contents:
        f = stored[hash_bytes(content)]
        assert (f.hash, f.size) == (hash_bytes(content), len(content))
        assert b"".join([p async for p in chunks.read_file(f)]) == content
        assert b"".join([p async for p in chunks.read_file(f, 3, 10)]) == content[3:10]
        assert ChunkedFile.decode(f.hash, f.size, f.encode_chunks()) == f


async def test_list_objects_gives_sizes_and_write_times(store: ObjectStore) -> None:
    from datetime import UTC, datetime, timedelta

    before = datetime.now(UTC) - timedelta(seconds=5)  # S3 keeps whole seconds
    await store.put("m/one", b"abc")
    await store.put("m/two", b"")
    await store.put("n/other", b"x")
    listed = {info.key: info async for info in store.list_objects("m/")}
    assert set(listed) == {"m/one", "m/two"}
    assert (listed["m/one"].size, listed["m/two"].size) == (3, 0)
    after = datetime.now(UTC) + timedelta(seconds=5)
    for info in listed.values():
        assert before <= info.modified <= after
    modified = await store.modified_at("m/one")
    assert modified is not None
    assert before <= modified <= after
    assert await store.modified_at("m/missing") is None


async def test_chunk_store_rewrites_a_chunk_older_than_it_may_reuse(store: ObjectStore) -> None:
    """A large chunk already stored is relied on only while it is young: an old one may be
    garbage that a collection is about to delete, so it is written again (fresh)."""
    from datetime import timedelta

    class CountingPuts:
        def __init__(self, inner: ObjectStore) -> None:
            self.inner, self.puts = inner, 0

        def __getattr__(self, name: str) -> object:
            return getattr(self.inner, name)

        async def put(self, key: str, data: bytes) -> None:
            self.puts += 1
            await self.inner.put(key, data)

    data = os.urandom(2 * 1024 * 1024)
    await ChunkStore(store, chunk_size=4 * 1024 * 1024).write_bytes(data)
    young, stale = CountingPuts(store), CountingPuts(store)
    await ChunkStore(
        young,  # type: ignore[arg-type]
        chunk_size=4 * 1024 * 1024,
        reuse_within=timedelta(hours=1),
    ).write_bytes(data)
    await ChunkStore(
        stale,  # type: ignore[arg-type]
        chunk_size=4 * 1024 * 1024,
        reuse_within=timedelta(0),
    ).write_bytes(data)
    assert (young.puts, stale.puts) == (0, 1)
