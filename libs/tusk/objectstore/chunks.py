"""Content-addressed file storage: a file is a list of chunks, each stored once under its
BLAKE3 hash, so identical data is kept once across files, commits and repos.

Uploads are streamed: at most ``max_in_flight`` chunks are held in memory at a time, and
reading the incoming stream waits while they are all in flight (back-pressure), so a file of
any size costs bounded memory.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

import blake3

from tusk.objectstore.base import ObjectStore

DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024
# Below this, a PUT costs about what a HEAD does, so small chunks are written without asking.
_CHECK_EXISTS_FROM = 1024 * 1024
_HASH_IN_THREAD_FROM = 1024 * 1024
_CHUNK_RECORD = struct.Struct(">32sQ")


def chunk_key(digest: str) -> str:
    return f"chunks/{digest[:2]}/{digest[2:4]}/{digest}"


def hash_bytes(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


@dataclass(frozen=True)
class ChunkedFile:
    """A stored file: its content hash, its size and the chunks that make it up."""

    hash: str
    size: int
    chunks: tuple[tuple[str, int], ...]

    def encode_chunks(self) -> bytes:
        return b"".join(_CHUNK_RECORD.pack(bytes.fromhex(h), n) for h, n in self.chunks)

    @staticmethod
    def decode_chunks(blob: bytes) -> tuple[tuple[str, int], ...]:
        return tuple((h.hex(), n) for h, n in _CHUNK_RECORD.iter_unpack(blob))


class ChunkStore:
    def __init__(
        self, store: ObjectStore, *, chunk_size: int = DEFAULT_CHUNK_SIZE, max_in_flight: int = 8
    ) -> None:
        self.store = store
        self.chunk_size = chunk_size
        self.max_in_flight = max_in_flight

    async def write_bytes(self, data: bytes) -> ChunkedFile:
        async def once() -> AsyncIterator[bytes]:
            yield data

        return await self.write_stream(once())

    async def write_stream(self, stream: AsyncIterable[bytes]) -> ChunkedFile:
        file_hasher = blake3.blake3()
        chunks: list[tuple[str, int]] = []
        slots = asyncio.Semaphore(self.max_in_flight)
        buffer = bytearray()
        size = 0

        async def store_chunk(index: int, data: bytes) -> None:
            try:
                digest = await _hash(data)
                chunks[index] = (digest, len(data))
                key = chunk_key(digest)
                if len(data) < _CHECK_EXISTS_FROM or not await self.store.exists(key):
                    await self.store.put(key, data)
            finally:
                slots.release()

        try:
            async with asyncio.TaskGroup() as uploads:

                async def submit(data: bytes) -> None:
                    await slots.acquire()
                    chunks.append(("", 0))
                    if len(data) >= _HASH_IN_THREAD_FROM:
                        await asyncio.to_thread(file_hasher.update, data)
                    else:
                        file_hasher.update(data)
                    uploads.create_task(store_chunk(len(chunks) - 1, data))

                async for piece in stream:
                    size += len(piece)
                    buffer += piece
                    while len(buffer) >= self.chunk_size:
                        data = bytes(buffer[: self.chunk_size])
                        del buffer[: self.chunk_size]
                        await submit(data)
                if buffer or not chunks:
                    await submit(bytes(buffer))
        except BaseExceptionGroup as group:
            # The caller wants the first failure (a cut-off upload, a store error), not a group.
            raise group.exceptions[0] from None
        return ChunkedFile(file_hasher.hexdigest(), size, tuple(chunks))

    async def read(
        self, chunks: tuple[tuple[str, int], ...], start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """Yield bytes ``[start, end)`` of a file, fetching the next chunk while one is sent."""
        wanted = []
        offset = 0
        for digest, length in chunks:
            lo, hi = (
                max(start, offset),
                min(end if end is not None else offset + length, offset + length),
            )
            if lo < hi:
                wanted.append((chunk_key(digest), lo - offset, hi - offset, length))
            offset += length

        def fetch(item: tuple[str, int, int, int]) -> asyncio.Task[bytes]:
            key, lo, hi, length = item
            whole = lo == 0 and hi == length
            return asyncio.ensure_future(
                self.store.get(key) if whole else self.store.get(key, lo, hi)
            )

        pending: asyncio.Task[bytes] | None = fetch(wanted[0]) if wanted else None
        try:
            for i in range(len(wanted)):
                assert pending is not None
                current = pending
                pending = fetch(wanted[i + 1]) if i + 1 < len(wanted) else None
                yield await current
        finally:
            if pending is not None:
                pending.cancel()


async def _hash(data: bytes) -> str:
    if len(data) >= _HASH_IN_THREAD_FROM:
        return await asyncio.to_thread(hash_bytes, data)
    return hash_bytes(data)
