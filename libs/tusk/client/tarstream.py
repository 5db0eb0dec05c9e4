"""Reading a tar stream as it arrives, and writing its files under a directory.

Only what the repo service sends is understood: regular files, with PAX records for long
names and content hashes. Anything else in the stream is an error, never silently skipped.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import anyio
import blake3

from tusk.errors import InvalidArgument

BLOCK = 512
_IN_MEMORY = 1 << 20
HASH_RECORD = "TUSK.hash"


@dataclass
class _Reader:
    pieces: AsyncIterator[bytes]
    buffer: bytearray

    async def exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            piece = await anext(self.pieces, None)
            if piece is None:
                raise InvalidArgument("the tar stream ended in the middle of an entry")
            self.buffer += piece
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    async def pieces_of(self, n: int) -> AsyncIterator[bytes]:
        """The next ``n`` bytes, as they come."""
        while n > 0:
            if not self.buffer:
                piece = await anext(self.pieces, None)
                if piece is None:
                    raise InvalidArgument("the tar stream ended in the middle of a file")
                self.buffer += piece
            take = min(n, len(self.buffer))
            yield bytes(self.buffer[:take])
            del self.buffer[:take]
            n -= take


def _pax_records(data: bytes) -> dict[str, str]:
    records: dict[str, str] = {}
    position = 0
    while position < len(data):
        space = data.index(b" ", position)
        length = int(data[position:space])
        key, _, value = data[space + 1 : position + length - 1].partition(b"=")
        records[key.decode()] = value.decode()
        position += length
    return records


@dataclass(frozen=True)
class Extracted:
    files: int
    bytes: int


async def extract(pieces: AsyncIterator[bytes], destination: Path) -> Extracted:
    """Write the stream's files under ``destination``, each checked against its content hash
    when the stream gives one. A file is written beside its place and renamed into it when
    complete, so an interrupted download leaves no partial file under a final name."""
    reader = _Reader(pieces, bytearray())
    root = await anyio.Path(destination).resolve()
    files = total = 0
    pax: dict[str, str] = {}
    while True:
        header = await reader.exactly(BLOCK)
        if header == b"\0" * BLOCK:
            return Extracted(files, total)
        try:
            info = tarfile.TarInfo.frombuf(header, "utf-8", "strict")
        except tarfile.HeaderError as e:
            raise InvalidArgument(f"not a tar stream: {e}") from None
        padded = info.size + (-info.size % BLOCK)
        if info.type in (tarfile.XHDTYPE, tarfile.XGLTYPE):
            pax = _pax_records((await reader.exactly(padded))[: info.size])
            continue
        name = pax.get("path", info.name)
        size = int(pax.get("size", info.size))
        expected = pax.get(HASH_RECORD)
        pax = {}
        if info.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
            raise InvalidArgument(f"tar entry {name!r} is not a regular file")
        relative = PurePosixPath(name)
        if relative.is_absolute() or ".." in relative.parts:
            raise InvalidArgument(f"tar entry {name!r} points outside the destination")
        target = Path(root).joinpath(*relative.parts)
        partial = target.with_name(f".{target.name}.part")
        hasher = blake3.blake3()
        if size <= _IN_MEMORY:
            # Small files are the many: written in one call each, not piece by piece.
            data = await reader.exactly(size)
            hasher.update(data)
            _write(partial, data)
        else:
            await anyio.Path(partial.parent).mkdir(parents=True, exist_ok=True)
            async with await anyio.open_file(partial, "wb") as out:
                async for piece in reader.pieces_of(size):
                    hasher.update(piece)
                    await out.write(piece)
        if padded > size:
            await reader.exactly(padded - size)
        if expected is not None and hasher.hexdigest() != expected:
            await anyio.Path(partial).unlink(missing_ok=True)
            raise InvalidArgument(f"{name} arrived damaged (its content hash does not match)")
        os.replace(partial, target)
        files += 1
        total += size


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def local_hashes(destination: Path) -> dict[str, str]:
    """Relative path → BLAKE3 hash of every file already under ``destination`` (what a resumed
    download may skip when the repo's copy has the same hash)."""
    found: dict[str, str] = {}
    if not destination.is_dir():
        return found
    for path in destination.rglob("*"):
        if path.is_file() and not path.name.endswith(".part"):
            hasher = blake3.blake3()
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    hasher.update(block)
            found[path.relative_to(destination).as_posix()] = hasher.hexdigest()
    return found
