"""Moving a datum's files: its inputs from the repo service to the pfs root, and what the
command wrote to ``<root>/out/`` back into the output commit.

Errors a datum causes (an input that is not there, an output name the repo refuses) become
:class:`DatumError`, a failed attempt; a repo service that stays unreachable is a worker error
and propagates as :class:`~tusk.errors.Unavailable`.

Staging makes its file system calls directly rather than in threads: a worker stages one datum
at a time, each call (a mkdir, a write to the page cache) takes microseconds, and a thread hop
cost more than the call, up to milliseconds each on a busy machine.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TypeVar

import structlog

from tusk.client import FileInfo, PutResult, RepoClient, batches
from tusk.client.repo import READ_SIZE
from tusk.concurrency import bounded
from tusk.errors import InvalidArgument, NotFound, PayloadTooLarge, Unavailable
from tusk.paths import normalize_path
from tusk.worker.protocol import DatumInputSpec, OutputFile

T = TypeVar("T")

PARALLEL = 4
"""Requests a datum's transfers run at once."""
_GLOB_SPECIAL = frozenset("*?[")

logger = structlog.get_logger("tusk.worker")


class DatumError(Exception):
    """Something about this datum failed an attempt; retrying the datum may or may not help,
    retrying the worker will not."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often a request that found the repo service unreachable is tried again."""

    attempts: int = 8
    first_delay: float = 0.25
    max_delay: float = 5.0

    async def call(self, operation: Callable[[], Awaitable[T]], what: str) -> T:
        delay = self.first_delay
        for attempt in range(1, self.attempts + 1):
            try:
                return await operation()
            except Unavailable as e:
                if attempt == self.attempts:
                    raise
                logger.warning(
                    "repo unavailable, retrying",
                    what=what,
                    error=e.message,
                    attempt=attempt,
                    delay_s=delay,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_delay)
        raise AssertionError("unreachable")


# --- the pfs root ----------------------------------------------------------------------------


def empty_directory(root: Path) -> None:
    """Remove everything inside ``root`` (which may be a mount point, so it stays)."""
    with os.scandir(root) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)


def check_input_name(name: str) -> None:
    if not name or "/" in name or name in (".", "..", "out") or "\x00" in name:
        raise InvalidArgument(
            f"input name {name!r} cannot be a directory of the pfs root: it must be one path "
            "segment and not 'out'"
        )


# --- inputs ----------------------------------------------------------------------------------


async def stage_inputs(
    client: RepoClient, inputs: Sequence[DatumInputSpec], root: Path, retry: RetryPolicy
) -> int:
    """Download each input to ``<root>/<name><path>``; the number of files written."""
    downloads: list[tuple[DatumInputSpec, str, Path]] = []
    for spec in inputs:
        base = root / spec.name
        base.mkdir(exist_ok=True)
        if spec.type == "file":
            downloads.append((spec, spec.path, _local(base, spec.path)))
            continue
        target = _local(base, spec.path)
        target.mkdir(parents=True, exist_ok=True)
        for info in await _files_below(client, spec, retry):
            if info.type == "dir":
                _local(base, info.path).mkdir(parents=True, exist_ok=True)
            else:
                downloads.append((spec, info.path, _local(base, info.path)))
    # Pachyderm's pfs.empty_files: the files are there, empty (the command needs only names).
    for spec, _, local in downloads:
        if spec.empty_files:
            local.parent.mkdir(parents=True, exist_ok=True)
            local.touch()
    await bounded(
        [
            _download_job(client, spec, path, local, retry)
            for spec, path, local in downloads
            if not spec.empty_files
        ],
        PARALLEL,
        pick=_worker_level_first,
    )
    return len(downloads)


def _local(base: Path, repo_path: str) -> Path:
    # Repo paths are normalized (absolute, no '..'), so this stays below ``base``.
    return base.joinpath(*PurePosixPath(repo_path).parts[1:])


async def _files_below(
    client: RepoClient, spec: DatumInputSpec, retry: RetryPolicy
) -> list[FileInfo]:
    """Every file and directory below a directory input, in one request where possible."""
    where = f"{spec.repo}@{spec.commit}:{spec.path}"
    try:
        if _GLOB_SPECIAL.isdisjoint(spec.path):
            pattern = "/**" if spec.path == "/" else f"{spec.path}/**"
            found = await retry.call(
                lambda: client.glob(spec.repo, spec.commit, pattern), f"list {where}"
            )
            if not any(f.path == spec.path for f in found):
                raise DatumError(f"input {spec.name!r}: directory {where} not found")
            return [f for f in found if f.path != spec.path]

        async def walk() -> list[FileInfo]:
            return [f async for f in client.walk(spec.repo, spec.commit, spec.path)]

        return await retry.call(walk, f"list {where}")
    except (NotFound, InvalidArgument) as e:
        raise DatumError(f"input {spec.name!r}: cannot list {where}: {e.message}") from e


def _download_job(
    client: RepoClient, spec: DatumInputSpec, path: str, local: Path, retry: RetryPolicy
) -> Callable[[], Awaitable[None]]:
    where = f"{spec.repo}@{spec.commit}:{path}"

    async def download() -> None:
        local.parent.mkdir(parents=True, exist_ok=True)
        with local.open("wb") as out:
            async with aclosing(client.get_file(spec.repo, spec.commit, path)) as pieces:
                async for piece in pieces:
                    out.write(piece)

    async def job() -> None:
        try:
            await retry.call(download, f"download {where}")
        except (NotFound, InvalidArgument) as e:
            raise DatumError(f"input {spec.name!r}: cannot download {where}: {e.message}") from e
        except OSError as e:
            raise DatumError(f"input {spec.name!r}: cannot write {local}: {e}") from e

    return job


# --- outputs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalFile:
    path: Path
    remote: str
    size: int
    identity: tuple[int, int]  # (st_dev, st_ino) when scanned: read only if still that file


def scan_outputs(out: Path) -> tuple[list[LocalFile], list[str]]:
    """The regular files below ``out``, and notes about what was left out (fifos, sockets).

    A symbolic link to a file of the datum's own pfs root (``out``'s parent: its staged inputs
    or other outputs) is uploaded as that file, as Pachyderm does. Any other link fails the
    datum: following it would upload whatever it points to on the worker's machine
    (``/etc/passwd``, a host directory)."""
    files: list[LocalFile] = []
    notes: list[str] = []
    root = out.parent.resolve()
    for directory, subdirs, names in os.walk(out, followlinks=False):
        here = Path(directory)
        subdirs.sort()
        for name in sorted([*subdirs, *names]):
            path = here / name
            info = os.lstat(path)
            relative = PurePosixPath(*path.relative_to(out).parts)
            if stat.S_ISLNK(info.st_mode):
                path, info = _followed(path, relative, root)
            if stat.S_ISDIR(info.st_mode):
                continue
            if not stat.S_ISREG(info.st_mode):
                notes.append(f"skipped {path}: not a regular file")
                continue
            try:
                remote = normalize_path(f"/{relative}", allow_root=False)
            except InvalidArgument as e:
                raise DatumError(f"output {relative}: {e.message}") from e
            files.append(LocalFile(path, remote, info.st_size, (info.st_dev, info.st_ino)))
    return files, notes


def _followed(link: Path, relative: PurePosixPath, root: Path) -> tuple[Path, os.stat_result]:
    """The file a link in the output names, if it is a regular file of the datum's pfs root."""
    target = os.readlink(link)
    resolved = Path(os.path.realpath(link))
    where = f"output {relative} is a symbolic link to {target}"
    if not resolved.is_relative_to(root):
        raise DatumError(
            f"{where}, outside the datum's directory; links are followed only to the datum's "
            "inputs and outputs: write the file itself into the output directory"
        )
    try:
        info = os.stat(resolved, follow_symlinks=False)
    except OSError as e:
        raise DatumError(f"{where}, which cannot be read: {e.strerror or e}") from e
    if not stat.S_ISREG(info.st_mode):
        raise DatumError(
            f"{where}, which is not a regular file (links to directories are not followed)"
        )
    return resolved, info


def _open_scanned(file: LocalFile) -> int:
    """A descriptor of the file as scanned. ``O_NOFOLLOW`` and the identity check refuse a
    file swapped for a link (or a directory above it for a link) since the scan."""
    try:
        fd = os.open(file.path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise DatumError(f"cannot read output {file.remote}: {e.strerror or e}") from e
    info = os.fstat(fd)
    if (info.st_dev, info.st_ino) != file.identity or not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise DatumError(f"output {file.remote} was replaced while it was being uploaded")
    return fd


def read_scanned(file: LocalFile) -> bytes:
    fd = _open_scanned(file)
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


async def _stream_scanned(file: LocalFile) -> AsyncIterator[bytes]:
    fd = await asyncio.to_thread(_open_scanned, file)
    with os.fdopen(fd, "rb") as handle:
        while piece := await asyncio.to_thread(handle.read, READ_SIZE):
            yield piece


async def upload_outputs(
    client: RepoClient, repo: str, commit: str, files: Sequence[LocalFile], retry: RetryPolicy
) -> list[OutputFile]:
    """Put the files into the output commit: small ones in batches, large ones streamed."""
    results: list[OutputFile] = []

    def collect(infos: Sequence[FileInfo]) -> None:
        results.extend(OutputFile(path=f.path, hash=f.hash, size=f.size_bytes) for f in infos)

    def put_one(file: LocalFile) -> Callable[[], Awaitable[None]]:
        async def job() -> None:
            result = await _put(
                retry,
                lambda: client.put_file(
                    repo, commit, file.remote, _stream_scanned(file), size=file.size
                ),
                file.remote,
            )
            collect(result)

        return job

    def put_batch(batch: list[LocalFile]) -> Callable[[], Awaitable[None]]:
        async def job() -> None:
            contents = await asyncio.to_thread(lambda: [read_scanned(f) for f in batch])
            pairs = [(f.remote, data) for f, data in zip(batch, contents, strict=True)]
            result = await _put(
                retry,
                lambda: client.put_files(repo, commit, pairs),
                f"{len(batch)} files ({batch[0].remote}, …)",
            )
            collect(result)

        return job

    alone, batched = batches.split(files, lambda f: f.size)
    jobs = [put_one(file) for file in alone] + [put_batch(batch) for batch in batched]
    await bounded(jobs, PARALLEL, pick=_worker_level_first)
    return sorted(results, key=lambda f: f.path)


async def _put(
    retry: RetryPolicy, operation: Callable[[], Awaitable[PutResult]], what: str
) -> list[FileInfo]:
    try:
        result = await retry.call(operation, f"upload {what}")
    except (InvalidArgument, PayloadTooLarge) as e:
        raise DatumError(f"cannot upload output {what}: {e.message}") from e
    except OSError as e:
        raise DatumError(f"cannot read output {what}: {e}") from e
    return result.files


def _worker_level_first(errors: Sequence[BaseException]) -> BaseException:
    """A worker-level error before a datum's own: the worker must not record a datum as failed
    because the repo service went away meanwhile."""
    return next((e for e in errors if not isinstance(e, DatumError)), errors[0])
