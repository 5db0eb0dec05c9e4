"""A directory of a commit as one tar stream.

Small files are stored packed together in shared chunks, so a directory is read chunk by chunk
— each chunk fetched once, a few ahead of the one being sent — rather than file by file. Each
member carries its content hash in a PAX record (``TUSK.hash``), so a client resuming a
download can tell which of its files are already complete.
"""

from __future__ import annotations

import asyncio
import tarfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from tusk.objectstore.chunks import ChunkedFile, ChunkStore, chunk_key

HASH_RECORD = "TUSK.hash"
_BLOCK = 512
_CHUNKS_AHEAD = 8
_SEND_SIZE = 1 << 20


@dataclass(frozen=True, slots=True)
class Member:
    name: str  # relative to the directory sent
    file: ChunkedFile


def _header(member: Member, mtime: float, hashes: bool) -> bytes:
    info = tarfile.TarInfo(member.name)
    info.size = member.file.size
    info.mode = 0o644
    info.mtime = mtime
    info.type = tarfile.REGTYPE
    if hashes:
        info.pax_headers = {HASH_RECORD: member.file.hash}
    return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")


def _padding(size: int) -> bytes:
    return b"\0" * (-size % _BLOCK)


async def tar_stream(
    chunks: ChunkStore, members: Sequence[Member], mtime: float, *, hashes: bool = True
) -> AsyncIterator[bytes]:
    """The archive in pieces of about ``_SEND_SIZE``: small files make three pieces each (header,
    contents, padding), and sending each on its own costs more than the file."""
    buffer = bytearray()
    async for piece in _tar_pieces(chunks, members, mtime, hashes=hashes):
        buffer += piece
        if len(buffer) >= _SEND_SIZE:
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        yield bytes(buffer)


async def _tar_pieces(
    chunks: ChunkStore, members: Sequence[Member], mtime: float, *, hashes: bool = True
) -> AsyncIterator[bytes]:
    """The members as a tar archive. Chunks are fetched in the order the members need them,
    up to ``_CHUNKS_AHEAD`` at a time, and dropped once no later member needs them."""
    last_use: dict[str, int] = {}
    order: list[str] = []
    for index, member in enumerate(members):
        for digest, _ in member.file.chunks:
            if digest not in last_use:
                order.append(digest)
            last_use[digest] = index
    fetching: dict[str, asyncio.Task[bytes]] = {}
    next_fetch = 0

    def fetch_ahead() -> None:
        nonlocal next_fetch
        while next_fetch < len(order) and len(fetching) < _CHUNKS_AHEAD:
            digest = order[next_fetch]
            fetching[digest] = asyncio.ensure_future(chunks.store.get(chunk_key(digest)))
            next_fetch += 1

    held: dict[str, bytes] = {}
    try:
        for index, member in enumerate(members):
            yield _header(member, mtime, hashes)
            file = member.file
            start, end = file.offset, file.offset + file.size
            position = 0
            for digest, length in file.chunks:
                lo, hi = max(start, position), min(end, position + length)
                position += length
                if lo >= hi:
                    continue
                if digest not in held:
                    fetch_ahead()
                    if digest not in fetching:  # needed again after it was dropped
                        fetching[digest] = asyncio.ensure_future(
                            chunks.store.get(chunk_key(digest))
                        )
                    held[digest] = await fetching.pop(digest)
                    fetch_ahead()
                data = held[digest]
                yield data[lo - (position - length) : hi - (position - length)]
            yield _padding(file.size)
            for digest, _ in file.chunks:
                if last_use.get(digest) == index:
                    held.pop(digest, None)
        yield b"\0" * (2 * _BLOCK)
    finally:
        for task in fetching.values():
            task.cancel()
