"""A directory of a commit as one tar stream.

Small files are stored packed together in shared chunks, so a directory is read chunk by chunk
— each chunk fetched once, a few ahead of the one being sent — rather than file by file. Each
member carries its content hash in a PAX record (``TUSK.hash``), so a client resuming a
download can tell which of its files are already complete.
"""

from __future__ import annotations

import asyncio
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
    """The member's tar header (PAX format): an extended header with the records it needs
    (its hash; its name or size when the ustar fields cannot hold them), then the ustar
    header. Built directly: ``tarfile.TarInfo.tobuf`` spent more than the rest of sending a
    small file, and a directory sends thousands."""
    name = member.name.encode("utf-8")
    size = member.file.size
    records = bytearray()
    if hashes:
        records += _pax_record(b"TUSK.hash", member.file.hash.encode("ascii"))
    if len(name) > 100 or not name.isascii():
        records += _pax_record(b"path", name)
        # Readers take the name from the record; the field only needs to be valid ASCII.
        name = member.name.encode("ascii", "replace")
    if size > _MAX_OCTAL_SIZE:
        records += _pax_record(b"size", str(size).encode("ascii"))
    stamp = int(mtime)
    body = _ustar(name[:100], size if size <= _MAX_OCTAL_SIZE else 0, stamp, b"0")
    if not records:
        return body
    extended = _ustar(b"././@PaxHeader", len(records), stamp, b"x")
    return extended + bytes(records) + _padding(len(records)) + body


_MAX_OCTAL_SIZE = 8**11 - 1  # what the 12-byte octal size field holds


def _pax_record(key: bytes, value: bytes) -> bytes:
    """``"<length> key=value\\n"``, where the length counts its own digits."""
    body = b" " + key + b"=" + value + b"\n"
    length = len(body) + len(str(len(body)))
    length = len(body) + len(str(length))  # one more digit when that carried over
    return str(length).encode("ascii") + body


def _ustar(name: bytes, size: int, mtime: int, kind: bytes) -> bytes:
    header = bytearray(_BLOCK)
    header[0 : len(name)] = name
    header[100:108] = b"0000644\0"
    header[108:116] = b"0000000\0"
    header[116:124] = b"0000000\0"
    header[124:136] = b"%011o\0" % size
    header[136:148] = b"%011o\0" % mtime
    header[148:156] = b" " * 8  # the checksum counts its own field as spaces
    header[156:157] = kind
    header[257:265] = b"ustar\x0000"
    header[329:337] = b"0000000\0"
    header[337:345] = b"0000000\0"
    header[148:155] = b"%06o\0" % sum(header)
    return bytes(header)


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
