"""Many small files in one request: which files travel together, and the tar stream that carries
them to ``POST …/files``.

`tusk put -r` and the worker's outputs both upload trees in which most files are small: each
small file on its own request would cost a round trip and a commit-tree update, so they travel
in batches, and files of :data:`SMALL_FILE` or more are streamed on their own.

The tar stream is built in pieces of about :data:`PIECE` bytes, each read and framed in one
call off the event loop: a thread hop per file (a stat, then a read) cost more than the file
itself on a busy machine, and a body of thousands of tiny writes cost httpx as much again.
"""

from __future__ import annotations

import tarfile
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import anyio.to_thread

from tusk.errors import InvalidArgument

T = TypeVar("T")

SMALL_FILE = 1 << 20
"""Files below this size travel in batches; larger ones are streamed one per request."""
BATCH_FILES = 1000
"""Most files in one batch (the repo service refuses more than TUSK_REPO_MAX_BATCH_FILES)."""
BATCH_BYTES = 64 << 20
"""Most bytes of content in one batch."""
PIECE = 1 << 20
"""About how much of a batch's tar stream is read and framed at a time."""
TAR_BLOCK = 512

ProgressCallback = Callable[[int], None]


def split(files: Iterable[T], size: Callable[[T], int]) -> tuple[list[T], list[list[T]]]:
    """The files to stream on their own (the large ones), and the rest in batches of at most
    :data:`BATCH_FILES` files and :data:`BATCH_BYTES` bytes, in their given order."""
    alone: list[T] = []
    batches: list[list[T]] = []
    batch: list[T] = []
    batch_bytes = 0
    for file in files:
        n = size(file)
        if n >= SMALL_FILE:
            alone.append(file)
            continue
        if batch and (len(batch) >= BATCH_FILES or batch_bytes + n > BATCH_BYTES):
            batches.append(batch)
            batch, batch_bytes = [], 0
        batch.append(file)
        batch_bytes += n
    if batch:
        batches.append(batch)
    return alone, batches


@dataclass(frozen=True)
class Member:
    """One file of a batch: its path in the commit, its content (or the local file holding
    it), its size, known before the body is sent so that its length can be declared, and its
    tar header."""

    path: str
    content: bytes | Path
    size: int
    header: bytes

    @classmethod
    def of(cls, path: str, content: bytes | Path) -> Member:
        """Stats a local file: call it off the event loop when there are many."""
        size = len(content) if isinstance(content, bytes) else content.stat().st_size
        info = tarfile.TarInfo(path.lstrip("/"))
        info.size, info.mode, info.type = size, 0o644, tarfile.REGTYPE
        return cls(path, content, size, info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))

    @property
    def length(self) -> int:
        """Its bytes in the tar stream: header, content, padding to a whole block."""
        return len(self.header) + self.size + (-self.size) % TAR_BLOCK


def members(files: Iterable[tuple[str, bytes | Path]]) -> list[Member]:
    return [Member.of(path, content) for path, content in files]


def stream_length(batch: Sequence[Member]) -> int:
    return sum(m.length for m in batch) + 2 * TAR_BLOCK


async def tar_stream(
    batch: Sequence[Member], progress: ProgressCallback | None = None
) -> AsyncIterator[bytes]:
    """The batch as an uncompressed tar stream, in pieces of about :data:`PIECE` bytes.

    A local file that no longer has the size it was stat'ed with fails the upload
    (:class:`~tusk.errors.InvalidArgument`) rather than sending a stream that disagrees with
    its declared length.
    """
    start = 0
    while start < len(batch):
        end, piece_bytes = start, 0
        while end < len(batch) and (end == start or piece_bytes < PIECE):
            piece_bytes += batch[end].length
            end += 1
        part = batch[start:end]
        yield await anyio.to_thread.run_sync(_frame, part)
        if progress is not None:
            progress(sum(m.size for m in part))
        start = end
    yield bytes(2 * TAR_BLOCK)


def _frame(part: Sequence[Member]) -> bytes:
    out = bytearray()
    for member in part:
        out += member.header
        content = member.content
        if isinstance(content, Path):
            content = _read_exactly(content, member.size)
        out += content
        out += bytes((-member.size) % TAR_BLOCK)
    return bytes(out)


def _read_exactly(path: Path, size: int) -> bytes:
    with open(path, "rb") as handle:
        data = handle.read(size + 1)
    if len(data) != size:
        raise InvalidArgument(
            f"{path} changed size while it was being uploaded ({size} bytes announced, "
            f"{'more' if len(data) > size else len(data)} read); nothing was written"
        )
    return data
