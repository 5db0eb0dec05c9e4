"""Content-addressed file storage: a file is a list of chunks, each stored once under its
BLAKE3 hash, so identical data is kept once across files, commits and repos.

Uploads are streamed: at most ``max_in_flight`` chunks are held in memory at a time, and
reading the incoming stream waits while they are all in flight (back-pressure), so a file of
any size costs bounded memory.

Small files put together (a batch) are packed end to end into shared chunks instead: one object
write per file would cost more than everything else a small file needs. Such a file is a slice
of its chunk, and is deduplicated by its own content hash rather than by chunk.
"""

from __future__ import annotations

import asyncio
import struct
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import blake3

from tusk.objectstore.base import ObjectStore

DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024
# Below this, a PUT costs about what a HEAD does, so small chunks are written without asking.
_CHECK_EXISTS_FROM = 1024 * 1024
_HASH_IN_THREAD_FROM = 1024 * 1024
# Files of a batch below this size share chunks; larger ones get chunks of their own.
PACK_BELOW = 1024 * 1024
_CHUNK_RECORD = struct.Struct(">32sQ")
_OFFSET = struct.Struct(">Q")


def chunk_key(digest: str) -> str:
    return f"chunks/{digest[:2]}/{digest[2:4]}/{digest}"


def hash_bytes(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


@dataclass(frozen=True)
class ChunkedFile:
    """A stored file: its content hash, its size and the chunks that hold it. The file is the
    bytes ``[offset, offset + size)`` of its chunks put end to end; ``offset`` is 0 but for a
    small file packed into a shared chunk."""

    hash: str
    size: int
    chunks: tuple[tuple[str, int], ...]
    offset: int = 0

    def encode_chunks(self) -> bytes:
        records = b"".join(_CHUNK_RECORD.pack(bytes.fromhex(h), n) for h, n in self.chunks)
        # A non-zero offset leads as 8 bytes: chunk records alone always fill a multiple of 40
        # bytes, so the two forms cannot be mistaken for each other.
        return _OFFSET.pack(self.offset) + records if self.offset else records

    @staticmethod
    def chunk_records(blob: bytes) -> bytes:
        """The chunk list of ``blob`` without its offset: the same bytes for every file that
        uses the same chunks, wherever in them it lies."""
        return blob[len(blob) % _CHUNK_RECORD.size :]

    @staticmethod
    def decode_chunks(blob: bytes) -> tuple[tuple[str, int], ...]:
        records = ChunkedFile.chunk_records(blob)
        return tuple((h.hex(), n) for h, n in _CHUNK_RECORD.iter_unpack(records))

    @classmethod
    def decode(cls, digest: str, size: int, blob: bytes) -> ChunkedFile:
        """The file stored as ``encode_chunks()`` gave ``blob``."""
        offset = _OFFSET.unpack_from(blob)[0] if len(blob) % _CHUNK_RECORD.size else 0
        return cls(digest, size, cls.decode_chunks(blob), offset)


class ChunkStore:
    def __init__(
        self,
        store: ObjectStore,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        max_in_flight: int = 8,
        reuse_within: timedelta | None = None,
    ) -> None:
        """``reuse_within``: a chunk already stored is relied on instead of written again only
        when it was written this recently. Garbage collection spares unreferenced chunks
        younger than its grace period, so with half that period here an upload never relies
        on a chunk that collection is about to reclaim. None: any stored chunk is reused."""
        self.store = store
        self.chunk_size = chunk_size
        self.max_in_flight = max_in_flight
        self.reuse_within = reuse_within

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
                chunks[index] = (await self._put_chunk(data), len(data))
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
                        with memoryview(buffer) as view:  # one copy, not a slice and a copy
                            data = bytes(view[: self.chunk_size])
                        del buffer[: self.chunk_size]
                        await submit(data)
                if buffer or not chunks:
                    await submit(bytes(buffer))
        except BaseExceptionGroup as group:
            # The caller wants the first failure (a cut-off upload, a store error), not a group.
            raise group.exceptions[0] from None
        return ChunkedFile(file_hasher.hexdigest(), size, tuple(chunks))

    async def write_many(self, contents: Mapping[str, bytes]) -> dict[str, ChunkedFile]:
        """Store many files at once, keyed by content hash (``hash_bytes``: the caller needs it
        first, to skip contents already stored). Files smaller than ``PACK_BELOW`` and the chunk
        size are packed into shared chunks of up to ``chunk_size`` bytes, so that a batch of
        small files costs a few object writes rather than one per file; larger files are
        chunked on their own."""
        stored: dict[str, ChunkedFile] = {}
        slots = asyncio.Semaphore(self.max_in_flight)
        pack_below = min(PACK_BELOW, self.chunk_size)

        async def write_pack(members: list[tuple[str, bytes]]) -> None:
            async with slots:
                pack = b"".join(data for _, data in members)
                digest = await self._put_chunk(pack)
            chunks = ((digest, len(pack)),)
            offset = 0
            for file_hash, data in members:
                stored[file_hash] = ChunkedFile(file_hash, len(data), chunks, offset)
                offset += len(data)

        async def write_alone(file_hash: str, data: bytes) -> None:
            async with slots:
                stored[file_hash] = await self.write_bytes(data)

        try:
            async with asyncio.TaskGroup() as writes:
                members: list[tuple[str, bytes]] = []
                packed = 0
                for file_hash, data in contents.items():
                    if len(data) >= pack_below:
                        writes.create_task(write_alone(file_hash, data))
                        continue
                    if members and packed + len(data) > self.chunk_size:
                        writes.create_task(write_pack(members))
                        members, packed = [], 0
                    members.append((file_hash, data))
                    packed += len(data)
                if members:
                    writes.create_task(write_pack(members))
        except BaseExceptionGroup as group:
            raise group.exceptions[0] from None
        return stored

    async def _put_chunk(self, data: bytes) -> str:
        """Store one chunk under its hash (unless a large one is there already); its hash."""
        digest = await _hash(data)
        key = chunk_key(digest)
        if len(data) < _CHECK_EXISTS_FROM or not await self._reusable(key):
            await self.store.put(key, data)
        return digest

    async def _reusable(self, key: str) -> bool:
        if self.reuse_within is None:
            return await self.store.exists(key)
        modified = await self.store.modified_at(key)
        return modified is not None and datetime.now(UTC) - modified < self.reuse_within

    def read_file(
        self, file: ChunkedFile, start: int = 0, end: int | None = None, *, ahead: int = 3
    ) -> AsyncIterator[bytes]:
        """Yield bytes ``[start, end)`` of a stored file, with ``ahead`` chunks fetched
        while one is sent."""
        stop = file.size if end is None else min(end, file.size)
        return self.read(file.chunks, file.offset + start, file.offset + stop, ahead=ahead)

    async def read(
        self,
        chunks: tuple[tuple[str, int], ...],
        start: int = 0,
        end: int | None = None,
        *,
        ahead: int = 1,
    ) -> AsyncIterator[bytes]:
        """Yield bytes ``[start, end)`` of a file, fetching the next ``ahead`` chunks while one
        is sent."""
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

        def fetch(item: tuple[str, int, int, int]) -> asyncio.Task[list[bytes]]:
            key, lo, hi, length = item
            whole = lo == 0 and hi == length
            # Pieces as they arrived, sent on as they are: no copy to join them.
            return asyncio.ensure_future(
                self.store.get_pieces(key) if whole else self.store.get_pieces(key, lo, hi)
            )

        pending: deque[asyncio.Task[list[bytes]]] = deque(
            fetch(w) for w in wanted[: ahead + 1]
        )
        following = ahead + 1
        try:
            while pending:
                current = pending.popleft()
                if following < len(wanted):
                    pending.append(fetch(wanted[following]))
                    following += 1
                for piece in await current:
                    if piece:
                        yield piece
        finally:
            for task in pending:
                task.cancel()

async def _hash(data: bytes) -> str:
    if len(data) >= _HASH_IN_THREAD_FROM:
        return await asyncio.to_thread(hash_bytes, data)
    return hash_bytes(data)
