"""A batch put's tar archive, read one member at a time and stored as it is read.

Memory stays bounded whatever the archive holds: small files are gathered into packs of up to
one chunk and stored together, larger ones are streamed chunk by chunk, and nothing but the
list of stored files outlives a member. The archive is refused (and nothing is staged) when it
expands past ``max_expanded_bytes``, holds more than ``max_files`` files, has a member that is
not a regular file, a name that is not UTF-8, or ends without its end-of-archive marker (a
body cut at a member boundary would otherwise look like a smaller, valid archive).
"""

from __future__ import annotations

import asyncio
import lzma
import tarfile
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import IO, TypeVar

from tusk.errors import InvalidArgument, PayloadTooLarge
from tusk.objectstore.chunks import PACK_BELOW, ChunkedFile, ChunkStore, hash_bytes
from tusk.paths import normalize_path

# What a broken archive raises while it is read: each means "not a valid archive" (400).
_ARCHIVE_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError, ValueError)

T = TypeVar("T")
KnownFiles = Callable[[set[str]], Awaitable[dict[str, ChunkedFile]]]


@dataclass(frozen=True)
class BatchLimits:
    max_member_bytes: int
    max_expanded_bytes: int
    max_files: int


async def store_archive(
    fileobj: IO[bytes],
    prefix: str,
    chunks: ChunkStore,
    known_files: KnownFiles,
    limits: BatchLimits,
) -> tuple[list[tuple[str, ChunkedFile]], set[str]]:
    """Store every file of the archive: (path, stored file) for each, in archive order, and
    the content hashes this archive wrote itself (the others were found stored before, and
    garbage collection may reclaim them meanwhile)."""
    stored: list[tuple[str, ChunkedFile]] = []
    fresh: set[str] = set()
    pack: list[tuple[int, str, bytes]] = []  # (index in stored, content hash, data)
    packed = 0
    expanded = 0
    pack_below = min(PACK_BELOW, chunks.chunk_size)

    async def flush() -> None:
        nonlocal pack, packed
        if not pack:
            return
        digests = {digest for _, digest, _ in pack}
        known = await known_files(digests)  # contents stored before are not written again
        written = await chunks.write_many(
            {digest: data for _, digest, data in pack if digest not in known}
        )
        fresh.update(written)
        by_hash = known | written
        for index, digest, _ in pack:
            stored[index] = (stored[index][0], by_hash[digest])
        pack, packed = [], 0

    try:
        archive = await asyncio.to_thread(tarfile.open, fileobj=fileobj, mode="r:*")
    except _ARCHIVE_ERRORS as e:
        raise InvalidArgument(f"body is not a valid tar archive: {e}") from None
    with archive:
        ended = False
        while not ended:
            run, ended = await _read(_read_run, archive, pack_below)
            for member, small in run:
                name = _checked_name(member)
                if not member.isreg():
                    raise InvalidArgument(
                        f"archive entry {name!r} is not a regular file (links and devices are "
                        "refused)"
                    )
                if member.size > limits.max_member_bytes:
                    raise PayloadTooLarge(
                        f"archive entry {name!r} is {member.size} bytes, over the "
                        f"{limits.max_member_bytes}-byte limit for files in a batch "
                        "(TUSK_REPO_MAX_BATCH_MEMBER_BYTES); put it on its own"
                    )
                expanded += member.size
                if expanded > limits.max_expanded_bytes:
                    raise PayloadTooLarge(
                        f"the archive expands to more than {limits.max_expanded_bytes} bytes "
                        "(TUSK_REPO_MAX_BATCH_EXPANDED_BYTES); split it into several batches"
                    )
                if len(stored) >= limits.max_files:
                    raise PayloadTooLarge(
                        f"the archive holds more than {limits.max_files} files "
                        "(TUSK_REPO_MAX_BATCH_FILES); split it into several batches"
                    )
                path = normalize_path(f"{prefix}/{name}", allow_root=False)
                if small is not None:
                    if len(small) != member.size:
                        raise InvalidArgument(f"archive entry {name!r} is cut short")
                    if packed + len(small) > chunks.chunk_size:
                        await flush()
                    stored.append((path, _PLACEHOLDER))
                    pack.append((len(stored) - 1, hash_bytes(small), small))
                    packed += len(small)
                    continue
                extracted = await _read(archive.extractfile, member)
                assert extracted is not None
                file = await chunks.write_stream(_pieces(extracted, chunks.chunk_size))
                if file.size != member.size:
                    raise InvalidArgument(f"archive entry {name!r} is cut short")
                stored.append((path, file))
                fresh.add(file.hash)
        await _read(_check_end_marker, archive)
    await flush()
    if not stored:
        raise InvalidArgument("the archive holds no files")
    return stored, fresh


_PLACEHOLDER = ChunkedFile("", 0, ())
_RUN_BYTES = 1 << 20


def _read_run(
    archive: tarfile.TarFile, small_below: int
) -> tuple[list[tuple[tarfile.TarInfo, bytes | None]], bool]:
    """The next members (directories left out) with the contents of the small regular ones,
    up to about ``_RUN_BYTES`` of them, and whether the archive ended. A run stops after any
    other member, whose contents are left to be streamed once it has been checked.

    One thread hop per run, not three per member: for an archive of thousands of small files
    the hops cost more than reading the files."""
    run: list[tuple[tarfile.TarInfo, bytes | None]] = []
    read = 0
    while read < _RUN_BYTES:
        member = archive.next()
        if member is None:
            return run, True
        if member.isdir():
            continue
        if not (member.isreg() and member.size < small_below):
            run.append((member, None))
            break
        extracted = archive.extractfile(member)
        assert extracted is not None
        data = extracted.read()
        run.append((member, data))
        read += len(data) + tarfile.BLOCKSIZE
    return run, False


async def _read(read: Callable[..., T], *args: object) -> T:
    """One blocking archive read, off the event loop, its failures made a 400."""
    try:
        return await asyncio.to_thread(read, *args)
    except _ARCHIVE_ERRORS as e:
        raise InvalidArgument(f"body is not a valid tar archive: {e}") from None


async def _pieces(extracted: IO[bytes], size: int) -> AsyncIterator[bytes]:
    while piece := await _read(extracted.read, size):
        yield piece


def _checked_name(member: tarfile.TarInfo) -> str:
    try:
        member.name.encode("utf-8")
    except UnicodeEncodeError:
        # tarfile keeps undecodable bytes as surrogates; such a name cannot be stored.
        shown = member.name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        raise InvalidArgument(
            f"archive entry name {shown!r} is not valid UTF-8; names must be UTF-8"
        ) from None
    return member.name


def _check_end_marker(archive: tarfile.TarFile) -> None:
    # tarfile stops quietly at a clean end of data and at a bad header after the first; a
    # whole archive ends with zero blocks instead.
    fileobj = archive.fileobj
    assert fileobj is not None
    fileobj.seek(archive.offset)
    block = fileobj.read(tarfile.BLOCKSIZE)
    if len(block) == tarfile.BLOCKSIZE and block.count(0) == tarfile.BLOCKSIZE:
        return
    if len(block) < tarfile.BLOCKSIZE:
        raise InvalidArgument(
            "the archive is truncated: it ends without its end-of-archive marker, so files "
            "may be missing; nothing was written"
        )
    raise InvalidArgument(
        f"body is not a valid tar archive: the header at byte {archive.offset} is invalid "
        "(a mangled name, size or checksum); nothing was written"
    )
