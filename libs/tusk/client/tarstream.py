"""Reading a tar stream as it arrives, and writing its files under a directory.

Only what the repo service sends is understood: regular files, with PAX records for long
names and content hashes. Anything else in the stream is an error, never silently skipped.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import anyio
import blake3

from tusk.errors import InvalidArgument

BLOCK = 512
_IN_MEMORY = 1 << 20
HASH_RECORD = "TUSK.hash"
_EMPTY_BLOCK = bytes(BLOCK)


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


# Creating a file costs the kernel far more than writing 4 KiB into it (a quarter to a whole
# millisecond here, against 40 µs to read one): small files are handed to a few threads, a
# batch at a time, so that creations overlap each other and the reading of the stream.
_WRITERS = 4
_BATCH_FILES = 64
_BATCH_BYTES = 1 << 20
_BATCHES_IN_FLIGHT = 2 * _WRITERS  # bounds memory: at most this many batches held


class _SmallFileWriter:
    """Writes small files (already checked against their hashes) in worker threads: each to
    its ``.part`` name, then renamed into place."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(_WRITERS, thread_name_prefix="tusk-get")
        self._batch: list[tuple[str, str, bytes]] = []
        self._batch_bytes = 0
        self._in_flight: deque[asyncio.Future[None]] = deque()
        self._made: set[str] = set()  # directories known to exist

    async def add(self, partial: str, target: str, data: bytes) -> None:
        self._batch.append((partial, target, data))
        self._batch_bytes += len(data)
        if len(self._batch) >= _BATCH_FILES or self._batch_bytes >= _BATCH_BYTES:
            await self._send()

    async def _send(self) -> None:
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        if batch:
            loop = asyncio.get_running_loop()
            self._in_flight.append(loop.run_in_executor(self._pool, self._write, batch))
        while len(self._in_flight) > _BATCHES_IN_FLIGHT:
            await self._in_flight.popleft()

    def _write(self, batch: list[tuple[str, str, bytes]]) -> None:
        for partial, target, data in batch:
            directory = os.path.dirname(target)
            if directory not in self._made:
                os.makedirs(directory, exist_ok=True)
                self._made.add(directory)
            with open(partial, "wb") as out:
                out.write(data)
            os.replace(partial, target)

    async def finish(self) -> None:
        """Write what is left; the first failure of any batch is raised."""
        await self._send()
        while self._in_flight:
            await self._in_flight.popleft()

    async def close(self) -> None:
        """Wait for every batch still being written (a thread cannot be stopped: nothing may
        be left writing behind the caller), whatever became of them."""
        pending = list(self._in_flight)
        self._in_flight.clear()
        if pending:
            await asyncio.shield(asyncio.gather(*pending, return_exceptions=True))
        self._pool.shutdown(wait=False)


async def extract(pieces: AsyncIterator[bytes], destination: Path) -> Extracted:
    """Write the stream's files under ``destination``, each checked against its content hash
    when the stream gives one. A file is written beside its place and renamed into it when
    complete, so an interrupted download leaves no partial file under a final name."""
    writer = _SmallFileWriter()
    try:
        extracted = await _extract(_Reader(pieces, bytearray()), destination, writer)
        await writer.finish()
        return extracted
    finally:
        await writer.close()


def _header(block: bytes) -> tuple[str, int, bytes]:
    """(name, size, type flag) of a ustar header, its checksum checked: the few fields the
    service's streams use, read directly (``tarfile.TarInfo.frombuf`` decodes every field, and
    cost more than the rest of a small file's handling)."""
    try:
        checksum = int(block[148:156].strip(b" \0") or b"0", 8)
        field = block[124:136]
        # base-256 holds sizes an octal field cannot
        size = int.from_bytes(field[1:]) if field[0] & 0x80 else int(field.strip(b" \0") or b"0", 8)
        name = block[:100].split(b"\0", 1)[0]
        if block[257:262] == b"ustar" and (prefix := block[345:500].split(b"\0", 1)[0]):
            name = prefix + b"/" + name
        decoded = name.decode("utf-8", "strict")
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"not a tar stream: a header does not parse ({e})") from None
    if checksum != sum(block[:148]) + 256 + sum(block[156:]):  # the checksum field as spaces
        raise InvalidArgument("not a tar stream: a header's checksum does not match")
    return decoded, size, block[156:157]


_PAX = (b"x", b"g")
_REGULAR = (b"0", b"\0")


async def _extract(reader: _Reader, destination: Path, writer: _SmallFileWriter) -> Extracted:
    root = str(await anyio.Path(destination).resolve())
    files = total = 0
    pax: dict[str, str] = {}
    while True:
        block = await reader.exactly(BLOCK)
        if block == _EMPTY_BLOCK:
            return Extracted(files, total)
        name, size, kind = _header(block)
        padded = size + (-size % BLOCK)
        if kind in _PAX:
            pax = _pax_records((await reader.exactly(padded))[:size])
            continue
        name = pax.get("path", name)
        size = int(pax.get("size", size))
        padded = size + (-size % BLOCK)
        expected = pax.get(HASH_RECORD)
        pax = {}
        if kind not in _REGULAR or name.endswith("/"):
            raise InvalidArgument(f"tar entry {name!r} is not a regular file")
        parts = [part for part in name.split("/") if part and part != "."]
        if name.startswith("/") or ".." in parts or not parts:
            raise InvalidArgument(f"tar entry {name!r} points outside the destination")
        target = os.path.join(root, *parts)
        partial = os.path.join(os.path.dirname(target), f".{parts[-1]}.part")
        if size <= _IN_MEMORY:
            # Small files are the many: checked here, written by the writer's threads.
            data = await reader.exactly(padded)
            data = data[:size] if padded > size else data
            if expected is not None and blake3.blake3(data).hexdigest() != expected:
                raise InvalidArgument(f"{name} arrived damaged (its content hash does not match)")
            await writer.add(partial, target, data)
        else:
            hasher = blake3.blake3()
            await anyio.Path(os.path.dirname(target)).mkdir(parents=True, exist_ok=True)
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
