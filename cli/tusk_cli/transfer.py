"""``tusk put`` and ``tusk get``: copy files and directory trees in and out of commits.

Uploads of a tree send small files in batches (one tar archive per request) and large files
on their own, streamed; a few requests run at once. Downloads stream to disk.
"""

from __future__ import annotations

import asyncio
import functools
import os
import stat
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, aclosing
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated

import anyio
import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from tusk.client import FileInfo, RepoClient, batches
from tusk.concurrency import bounded
from tusk.errors import InvalidArgument
from tusk.paths import Address, normalize_path, parse_address
from tusk_cli import sources
from tusk_cli.common import ADDRESS_HELP, connect, note, run, size, stderr
from tusk_cli.download import get_tree
from tusk_cli.writing import (
    DEFAULT_WAIT,
    CommitOption,
    Target,
    WaitOption,
    left_open_hint,
    writable_commit,
)

STDIN = "-"

ParallelOption = Annotated[
    int,
    typer.Option(
        "--parallel",
        "-p",
        min=1,
        max=64,
        help="Requests to run at once.",
    ),
]


@dataclass(frozen=True)
class LocalFile:
    path: Path
    remote: str
    size: int


class Meter:
    """Bytes and files done, shown as a progress bar on a terminal and summed up after."""

    def __init__(self, verb: str, total_bytes: int | None, total_files: int) -> None:
        self.files = 0
        self.total_files = total_files
        self.bytes = 0
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TextColumn("{task.fields[files]}"),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=stderr,
            disable=not stderr.is_terminal,
            transient=True,
        )
        self.task: TaskID = self.progress.add_task(verb, total=total_bytes, files=self._files())

    def _files(self) -> str:
        return f"{self.files}/{self.total_files} files"

    def add_bytes(self, n: int) -> None:
        self.bytes += n
        self.progress.update(self.task, advance=n)

    def add_files(self, n: int) -> None:
        self.files += n
        self.progress.update(self.task, files=self._files())

    def __enter__(self) -> Meter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


# --- put -------------------------------------------------------------------------------------


def put(
    address: Annotated[
        str,
        typer.Argument(
            metavar="REPO@BRANCH:/PATH",
            show_default=False,
            help="Where to put it: a branch (or an open commit's id) and a path. Without a path, "
            "or with a path ending in '/', the local file's name is kept; with -r the path is the "
            "directory the tree goes into.",
        ),
    ],
    file: Annotated[
        str,
        typer.Option(
            "--file",
            "-f",
            metavar="LOCAL",
            show_default=False,
            help="The local file or, with -r, directory to upload; '-' reads stdin.",
        ),
    ],
    recursive: Annotated[
        bool,
        typer.Option(
            "--recursive",
            "-r",
            help="Upload a directory tree: its contents go under PATH.",
        ),
    ] = False,
    parallel: ParallelOption = 4,
    admin_override: Annotated[
        str | None,
        typer.Option(
            "--admin-override",
            metavar="REASON",
            help="Write to a pipeline's output repo or a protected branch by hand, to repair it; "
            "the reason is recorded in the commit.",
            show_default=False,
        ),
    ] = None,
    commit: CommitOption = None,
    wait: WaitOption = DEFAULT_WAIT,
    untar: sources.UntarOption = False,
    split: sources.SplitOption = None,
    target_file_datums: sources.TargetDatumsOption = 0,
    target_file_bytes: sources.TargetBytesOption = 0,
    header_records: sources.HeaderRecordsOption = 0,
) -> None:
    """Upload a file or a directory tree into a commit.

    The upload opens a commit of its own on the branch and finishes it when everything is
    uploaded (or abandons it on failure), so that it is all or nothing. Uploads to one branch
    at once land one after the other: each waits for the previous one's commit to be finished.
    To group several puts into one commit, open it with `tusk commit start` and pass its id
    with `--commit`; it stays open until you finish it.

    Examples:

    `tusk put raw@master:/data/2024-03.csv -f march.csv`

    `tusk put raw@master:/images -r -f ./images`

    `-f` also takes a URL, streamed into the commit: `http://`, `https://` or `s3://BUCKET/KEY`
    (with the AWS credentials of the environment; `AWS_ENDPOINT_URL` for another S3 server):

    `tusk put raw@master:/ -f https://example.com/data/day-001.csv`

    As `pachctl put file`, `--untar` puts an archive's files instead of the archive, and
    `--split line|json|csv` cuts a file into numbered pieces for a glob to make datums of
    (`--header-records 1` starts every piece with a CSV's header row):

    `tusk put raw@master:/images --untar -f https://example.com/images.tar.gz`

    `tusk put raw@master:/users --split json --target-file-datums 100 -f users.jsonl`

    `tusk put raw@master:/sales -f sales.csv --split csv --header-records 1`
    """
    run(_put(
        address, file, recursive=recursive, parallel=parallel, join=commit, wait=wait,
        admin_override=admin_override,
        reshape=Reshape(untar, split, target_file_datums, target_file_bytes, header_records),
    ))


@dataclass(frozen=True)
class Reshape:
    untar: bool = False
    split: str | None = None
    per_piece: int = 0
    bytes_per_piece: int = 0
    header_records: int = 0

    @property
    def any(self) -> bool:
        return self.untar or self.split is not None


async def _put(
    text: str,
    local: str,
    *,
    recursive: bool,
    parallel: int,
    join: str | None = None,
    wait: float = DEFAULT_WAIT,
    admin_override: str | None = None,
    reshape: Reshape | None = None,
) -> None:
    reshape = reshape or Reshape()
    sources.check_options(
        reshape.split,
        reshape.untar,
        recursive,
        reshape.per_piece,
        reshape.bytes_per_piece,
        reshape.header_records,
    )
    address = parse_address(text)
    into = functools.partial(
        writable_commit,
        description=f"tusk put {text}",
        join=join,
        wait=wait,
        admin_override=admin_override,
    )
    if local == STDIN:
        if reshape.any:
            raise InvalidArgument("--untar and --split read a file or a URL, not stdin")
        await _put_stdin(text, address, into)
        return
    if reshape.any:
        with tempfile.TemporaryDirectory(prefix="tusk-put-") as scratch:
            await _put_reshaped(text, address, local, reshape, Path(scratch), parallel, into)
        return
    if sources.is_url(local):
        await _put_url(text, address, local, into)
        return
    source = Path(local)
    info = await anyio.Path(source).stat()
    if stat.S_ISDIR(info.st_mode):
        if not recursive:
            raise InvalidArgument(f"{local} is a directory: use -r to upload a directory tree")
        files, skipped = await asyncio.to_thread(_scan, source, address.path or "/")
        for path in skipped:
            note(f"[yellow]skipped {escape(str(path))}: not a regular file[/]")
        if not files:
            raise InvalidArgument(f"{local} holds no files to upload")
    else:
        remote = _file_destination(text, address, source.name, into=recursive)
        files = [LocalFile(source, remote, info.st_size)]
    await _upload(files, address, parallel, into)


async def _upload(
    files: list[LocalFile],
    address: Address,
    parallel: int,
    into: Callable[[RepoClient, Address], AbstractAsyncContextManager[Target]],
) -> None:
    total = sum(f.size for f in files)
    async with connect() as client, into(client, address) as target:
        with Meter("uploading", total, len(files)) as meter:
            await bounded(_upload_jobs(client, target, files, meter), parallel)
        plural = "" if len(files) == 1 else "s"
        note(f"put {len(files)} file{plural} ({size(total)}) into {escape(target.where)}")
        if not target.owned:
            note(left_open_hint(target))


async def _put_url(
    text: str,
    address: Address,
    url: str,
    into: Callable[[RepoClient, Address], AbstractAsyncContextManager[Target]],
) -> None:
    """Stream the URL's bytes into one file of the commit, never holding it whole."""
    remote = _file_destination(text, address, sources.url_name(url), into=False)
    # The source answers before a commit is opened: a URL that cannot be read opens none.
    async with (
        connect() as client,
        sources.open_url(url) as opened,
        into(client, address) as target,
    ):
        with Meter("uploading", opened.size, 1) as meter:
            result = await client.put_file(
                target.repo, target.commit, remote, _counted(opened.pieces, meter)
            )
            meter.add_files(1)
        note(
            f"put {escape(url)} ({size(result.files[0].size_bytes)}) as {escape(remote)} "
            f"into {escape(target.where)}"
        )
        if not target.owned:
            note(left_open_hint(target))


async def _counted(pieces: AsyncIterator[bytes], meter: Meter) -> AsyncIterator[bytes]:
    async for piece in pieces:
        meter.add_bytes(len(piece))
        yield piece


async def _put_reshaped(
    text: str,
    address: Address,
    local: str,
    reshape: Reshape,
    scratch: Path,
    parallel: int,
    into: Callable[[RepoClient, Address], AbstractAsyncContextManager[Target]],
) -> None:
    """--untar or --split: the file (a URL downloaded first) unpacked or cut into a tree of
    files, which is uploaded as a tree."""
    if sources.is_url(local):
        name = sources.url_name(local)
        source = scratch / "download"
        with Meter("downloading", None, 1) as meter:
            await sources.download(local, source, meter.add_bytes)
    else:
        source = Path(local)
        name = source.name
        if not source.is_file():
            raise InvalidArgument(f"{local} is not a file: --untar and --split take one file")
    pieces = scratch / "files"
    pieces.mkdir()
    if reshape.untar:
        await asyncio.to_thread(sources.untar, source, pieces)
        destination = address.path or "/"
    else:
        assert reshape.split is not None
        count = await asyncio.to_thread(
            sources.split,
            source,
            pieces,
            reshape.split,
            per_piece=reshape.per_piece,
            bytes_per_piece=reshape.bytes_per_piece,
            header_records=reshape.header_records,
        )
        destination = _file_destination(text, address, name, into=False)
        note(f"split {escape(name)} into {count} pieces under {escape(destination)}")
    files, skipped = await asyncio.to_thread(_scan, pieces, destination)
    for path in skipped:
        note(f"[yellow]skipped {escape(str(path.relative_to(pieces)))}: not a regular file[/]")
    if not files:
        raise InvalidArgument(f"{local} holds no files to put")
    await _upload(files, address, parallel, into)


async def _put_stdin(
    text: str,
    address: Address,
    into: Callable[[RepoClient, Address], AbstractAsyncContextManager[Target]],
) -> None:
    if address.path in (None, "/") or text.endswith("/"):
        raise InvalidArgument("reading stdin (-f -) needs a file path: REPO@BRANCH:/PATH")
    assert address.path is not None

    async def pieces() -> AsyncIterator[bytes]:
        while piece := await asyncio.to_thread(sys.stdin.buffer.read, 1 << 20):
            yield piece

    async with connect() as client, into(client, address) as target:
        result = await client.put_file(target.repo, target.commit, address.path, pieces())
        note(f"put {size(result.files[0].size_bytes)} from stdin into {escape(target.where)}")
        if not target.owned:
            note(left_open_hint(target))


def _file_destination(text: str, address: Address, name: str, *, into: bool) -> str:
    """The file's path in the commit: PATH itself, or PATH/NAME when PATH is a directory (no
    path, a trailing '/', or -r)."""
    if into or address.path is None or address.path == "/" or text.endswith("/"):
        return normalize_path(f"{address.path or ''}/{name}")
    return address.path


def _scan(root: Path, destination: str) -> tuple[list[LocalFile], list[Path]]:
    """The regular files below ``root`` (symlinks to files followed, not to directories)."""
    files, skipped = [], []
    for directory, subdirs, names in os.walk(root):
        subdirs.sort()
        here = Path(directory)
        for name in subdirs:
            if (here / name).is_symlink():
                skipped.append(here / name)
        for name in sorted(names):
            path = here / name
            try:
                info = path.stat()
            except FileNotFoundError:  # a dangling symlink
                skipped.append(path)
                continue
            if not stat.S_ISREG(info.st_mode):
                skipped.append(path)
                continue
            relative = PurePosixPath(*path.relative_to(root).parts)
            remote = normalize_path(f"{destination.rstrip('/')}/{relative}")
            files.append(LocalFile(path, remote, info.st_size))
    return files, skipped


def _upload_jobs(
    client: RepoClient, target: Target, files: list[LocalFile], meter: Meter
) -> list[Callable[[], Awaitable[None]]]:
    alone, batched = batches.split(files, lambda f: f.size)
    jobs: list[Callable[[], Awaitable[None]]] = [
        functools.partial(_put_one, client, target, file, meter) for file in alone
    ]
    jobs += [functools.partial(_put_batch, client, target, batch, meter) for batch in batched]
    return jobs


async def _put_one(client: RepoClient, target: Target, file: LocalFile, meter: Meter) -> None:
    await client.put_file(
        target.repo, target.commit, file.remote, file.path, progress=meter.add_bytes
    )
    meter.add_files(1)


async def _put_batch(
    client: RepoClient, target: Target, batch: list[LocalFile], meter: Meter
) -> None:
    await client.put_files(
        target.repo,
        target.commit,
        [(f.remote, f.path) for f in batch],
        progress=meter.add_bytes,
    )
    meter.add_files(len(batch))


# --- get -------------------------------------------------------------------------------------


def get(
    address: Annotated[
        str,
        typer.Argument(
            metavar="REPO@REF:/PATH",
            help=ADDRESS_HELP,
            show_default=False,
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="OUT",
            show_default=False,
            help="Write here instead of stdout: a file, or an existing directory to write into. "
            "With -r, the directory to download the tree to.",
        ),
    ] = None,
    recursive: Annotated[
        bool,
        typer.Option(
            "--recursive",
            "-r",
            help="Download a directory tree (needs -o), in one stream.",
        ),
    ] = False,
    parallel: ParallelOption = 4,
    skip_existing: Annotated[
        bool,
        typer.Option(
            "--skip-existing",
            help="With -r: leave out files already under OUT with the same contents (resumes "
            "an interrupted download).",
        ),
    ] = False,
) -> None:
    """Download a file (to stdout, or to -o) or a directory tree (-r -o DIR).

    Examples:

    `tusk get raw@master:/data/2024-03.csv > march.csv`

    `tusk get raw@master^1:/images -r -o ./images`
    """
    run(_get(address, output, recursive=recursive, parallel=parallel, skip=skip_existing))


async def _get(
    text: str, output: Path | None, *, recursive: bool, parallel: int, skip: bool = False
) -> None:
    address = parse_address(text)
    path = address.path or "/"
    if output is not None and str(output) == STDIN:
        output = None
    async with connect() as client:
        # Pin the commit: a branch that moves meanwhile must not mix two commits' files.
        commit = (await client.inspect_commit(address.repo, str(address.ref_or_default))).id
        info = await client.stat(address.repo, commit, path)
        if info.type == "dir":
            if not recursive:
                raise InvalidArgument(
                    f"{path} is a directory: use -r -o DIR to download the tree below it"
                )
            if output is None:
                raise InvalidArgument("get -r needs -o DIR: the directory to write the tree into")
            await get_tree(client, address.repo, commit, path, output, skip_existing=skip)
            return
        if output is None:
            async with aclosing(client.get_file(address.repo, commit, path)) as pieces:
                async for piece in pieces:
                    sys.stdout.buffer.write(piece)
            sys.stdout.buffer.flush()
            return
        if await anyio.Path(output).is_dir():
            output = output / PurePosixPath(path).name
        with Meter("downloading", info.size_bytes, 1) as meter:
            await _download(client, address.repo, commit, info, output, meter)
        note(f"wrote {escape(str(output))} ({size(info.size_bytes)}) from commit {commit}")


async def _download(
    client: RepoClient, repo: str, commit: str, info: FileInfo, target: Path, meter: Meter
) -> None:
    """Write to a temporary name beside the target and rename it when complete, so that an
    interrupted download never leaves a truncated file under the real name."""
    await anyio.Path(target.parent).mkdir(parents=True, exist_ok=True)
    special = await anyio.Path(target).exists() and not await anyio.Path(target).is_file()
    partial = target if special else target.with_name(f".{target.name}.tusk-partial")
    done = False
    try:
        async with (
            await anyio.open_file(partial, "wb") as out,
            aclosing(client.get_file(repo, commit, info.path)) as pieces,
        ):
            async for piece in pieces:
                await out.write(piece)
                meter.add_bytes(len(piece))
        if partial != target:
            await anyio.Path(partial).replace(target)
        done = True
    finally:
        if not done and partial != target:
            await anyio.Path(partial).unlink(missing_ok=True)
    meter.add_files(1)
