"""An async client for the repo service's REST API: one method per route.

Errors the server answers become the matching :mod:`tusk.errors` exception carrying the
server's message; a server that cannot be reached becomes :class:`~tusk.errors.Unavailable`.
Uploads and downloads are streamed, so a file of any size costs bounded memory.
"""

from __future__ import annotations

from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Generator,
    Iterable,
)
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

import anyio
import httpx

from tusk.client.auth import AuthApi
from tusk.client.http import LazyModule, params, seg
from tusk.errors import (
    InvalidArgument,
)

READ_SIZE = 1 << 20
"""How much of a local file is read at a time while uploading it."""

ProgressCallback = Callable[[int], None]
"""Called with the number of file bytes just sent."""

FileSource = bytes | Path | AsyncIterable[bytes]

M = TypeVar("M", bound="BaseModel")

if TYPE_CHECKING:
    from pydantic import BaseModel

    from tusk.client import batches, tarstream
    from tusk.client.tarstream import Extracted
    from tusk.wire import repo as wire
    from tusk.wire.repo import (
        BranchInfo,
        CommitInfo,
        CommitRef,
        DiffResult,
        DroppedCommits,
        FileInfo,
        GcReport,
        HistoryEntry,
        MergeInfo,
        Page,
        ProjectInfo,
        PutResult,
        RepoInfo,
        TagInfo,
    )
else:
    wire = LazyModule("tusk.wire.repo")  # not tusk.client.models: that loads the job models too
    # Trees up and down (tar, blake3, worker threads): imported when one is sent or fetched.
    batches = LazyModule("tusk.client.batches")
    tarstream = LazyModule("tusk.client.tarstream")


class RepoClient(AuthApi):
    """The repo service's API. Use as ``async with RepoClient(url) as client: ...``.

    Refs name a commit: a commit id or a branch (its head), optionally followed by ``^``,
    ``^N`` or ``~N`` for ancestors. Writes go to an open commit: its id, or a branch name (the
    branch's open commit). Methods that page through results are async iterators.
    """

    service = "repo"
    url_setting = "TUSK_REPO_URL"

    # --- projects ----------------------------------------------------------------------------

    async def create_project(self, name: str, description: str = "") -> ProjectInfo:
        """Create a project: repos and pipelines in it are named ``<name>/<repo>``."""
        response = await self._request(
            "POST", "/v1/projects", json={"name": name, "description": description}
        )
        return self._parse(wire.ProjectInfo, response)

    async def list_projects(self) -> list[ProjectInfo]:
        """Every project, ``default`` first."""
        return self._parse_list(wire.ProjectInfo, await self._request("GET", "/v1/projects"))

    async def delete_project(self, name: str) -> None:
        """Delete an empty project (``Conflict`` while it holds repos)."""
        await self._request("DELETE", f"/v1/projects/{seg(name)}")

    # --- repos -------------------------------------------------------------------------------

    async def create_repo(
        self, name: str, description: str = "", *, pipeline: str | None = None
    ) -> RepoInfo:
        """Create a repo; ``pipeline`` makes it that pipeline's output, which only its jobs
        write to."""
        body: dict[str, object] = {"name": name, "description": description}
        if pipeline is not None:
            body["pipeline"] = pipeline
        response = await self._request("POST", "/v1/repos", json=body)
        return self._parse(wire.RepoInfo, response)

    async def set_repo_owner(self, name: str, pipeline: str | None) -> RepoInfo:
        """Record the pipeline whose output the repo is (None: anyone writes to it)."""
        response = await self._request(
            "PUT", f"/v1/repos/{seg(name)}/owner", json={"pipeline": pipeline}
        )
        return self._parse(wire.RepoInfo, response)

    async def set_retention(
        self, name: str, *, keep_days: int | None = None, keep_last: int | None = None
    ) -> RepoInfo:
        """Retention of commits on branches other than master, applied by garbage collection."""
        response = await self._request(
            "PUT",
            f"/v1/repos/{seg(name)}/retention",
            json={"keep_days": keep_days, "keep_last": keep_last},
        )
        return self._parse(wire.RepoInfo, response)

    async def collect_garbage(
        self,
        *,
        dry_run: bool = False,
        grace_seconds: float | None = None,
        compact_below: float | None = None,
    ) -> GcReport:
        """Delete what no commit reaches (or, with ``dry_run``, count it), and compact packs of
        small files used less than ``compact_below`` (default: the service's setting)."""
        query: dict[str, str] = {"dry_run": "true" if dry_run else "false"}
        if grace_seconds is not None:
            query["grace_seconds"] = str(grace_seconds)
        if compact_below is not None:
            query["compact_below"] = str(compact_below)
        return self._parse(wire.GcReport, await self._request("POST", "/v1/gc", params=query))

    # --- tags and merges ---------------------------------------------------------------------

    async def create_tag(self, repo: str, name: str, ref: str) -> TagInfo:
        """Name a finished commit for good: ``repo@NAME`` then works wherever a ref does."""
        response = await self._request(
            "POST", f"/v1/repos/{seg(repo)}/tags", json={"name": name, "ref": ref}
        )
        return self._parse(wire.TagInfo, response)

    async def list_tags(self, repo: str) -> list[TagInfo]:
        response = await self._request("GET", f"/v1/repos/{seg(repo)}/tags")
        return self._parse_list(wire.TagInfo, response)

    async def merge(
        self,
        repo: str,
        source: str,
        into: str,
        *,
        strategy: Literal["ours", "theirs"] | None = None,
        description: str = "",
        admin_override: str | None = None,
    ) -> MergeInfo:
        """Merge ``source`` (a ref) into the branch ``into``; conflicts raise ``Conflict``
        with ``details["conflicts"]`` listing them, and nothing is written."""
        body: dict[str, object] = {"source": source, "into": into, "description": description}
        if strategy is not None:
            body["strategy"] = strategy
        if admin_override is not None:
            body["admin_override"] = admin_override
        response = await self._request("POST", f"/v1/repos/{seg(repo)}/merge", json=body)
        return self._parse(wire.MergeInfo, response)

    async def delete_commit(self, repo: str, ref: str, *, cascade: bool = False) -> DroppedCommits:
        """Delete a finished commit (with ``cascade``, everything derived from it too)."""
        response = await self._request(
            "POST",
            f"/v1/repos/{seg(repo)}/commits/{seg(ref)}/delete",
            params={"cascade": "true" if cascade else "false"},
        )
        return self._parse(wire.DroppedCommits, response)

    async def squash(
        self, repo: str, oldest: str, newest: str, *, cascade: bool = False
    ) -> DroppedCommits:
        """Squash ``oldest``..``newest`` into ``newest``."""
        response = await self._request(
            "POST",
            f"/v1/repos/{seg(repo)}/squash",
            json={"oldest": oldest, "newest": newest, "cascade": cascade},
        )
        return self._parse(wire.DroppedCommits, response)

    async def list_repos(self) -> list[RepoInfo]:
        return self._parse_list(wire.RepoInfo, await self._request("GET", "/v1/repos"))

    async def inspect_repo(self, name: str) -> RepoInfo:
        return self._parse(wire.RepoInfo, await self._request("GET", f"/v1/repos/{seg(name)}"))

    async def delete_repo(self, name: str, *, force: bool = False) -> None:
        """Delete a repo; refused while other repos' provenance names it, unless ``force``."""
        params = {"force": "true"} if force else None
        await self._request("DELETE", f"/v1/repos/{seg(name)}", params=params)

    # --- branches ----------------------------------------------------------------------------

    async def create_branch(self, repo: str, name: str, head: str | None = None) -> BranchInfo:
        """Create a branch, empty or starting at ``head`` (a ref such as ``master^1``)."""
        response = await self._request(
            "POST", f"/v1/repos/{seg(repo)}/branches", json={"name": name, "head": head}
        )
        return self._parse(wire.BranchInfo, response)

    async def list_branches(self, repo: str) -> list[BranchInfo]:
        return self._parse_list(
            wire.BranchInfo, await self._request("GET", f"/v1/repos/{seg(repo)}/branches")
        )

    async def inspect_branch(self, repo: str, name: str) -> BranchInfo:
        response = await self._request("GET", f"/v1/repos/{seg(repo)}/branches/{seg(name)}")
        return self._parse(wire.BranchInfo, response)

    async def move_branch(self, repo: str, name: str, head: str) -> BranchInfo:
        """Point the branch's head at another finished commit (a ref)."""
        response = await self._request(
            "PUT", f"/v1/repos/{seg(repo)}/branches/{seg(name)}", json={"head": head}
        )
        return self._parse(wire.BranchInfo, response)

    async def protect_branch(self, repo: str, name: str, protected: bool = True) -> BranchInfo:
        """Protect a branch (it then changes only by merges), or lift the protection."""
        response = await self._request(
            "PUT",
            f"/v1/repos/{seg(repo)}/branches/{seg(name)}/protection",
            json={"protected": protected},
        )
        return self._parse(wire.BranchInfo, response)

    async def delete_branch(self, repo: str, name: str) -> None:
        await self._request("DELETE", f"/v1/repos/{seg(repo)}/branches/{seg(name)}")

    # --- commits -----------------------------------------------------------------------------

    async def start_commit(
        self,
        repo: str,
        branch: str = "master",
        *,
        description: str = "",
        provenance: Iterable[CommitRef] = (),
        global_id: str | None = None,
        empty: bool = False,
        pipeline: str | None = None,
        admin_override: str | None = None,
    ) -> CommitInfo:
        """Open a commit on ``branch`` (created if missing); its parent is the branch's head,
        whose files it starts with unless ``empty``. ``pipeline``: the pipeline whose job
        opens it (an output repo takes commits only from its pipeline); ``admin_override``:
        why an admin writes to an output repo or protected branch by hand (recorded)."""
        body: dict[str, object] = {
            "branch": branch,
            "description": description,
            "provenance": [p.model_dump() for p in provenance],
            "global_id": global_id,
            "empty": empty,
        }
        if pipeline is not None:
            body["pipeline"] = pipeline
        if admin_override is not None:
            body["admin_override"] = admin_override
        response = await self._request("POST", f"/v1/repos/{seg(repo)}/commits", json=body)
        return self._parse(wire.CommitInfo, response)

    async def finish_commit(self, repo: str, ref: str, *, error: str | None = None) -> CommitInfo:
        """Finish an open commit (its id, or a branch's open commit); ``error`` marks it failed."""
        response = await self._request(
            "POST", f"/v1/repos/{seg(repo)}/commits/{seg(ref)}/finish", json={"error": error}
        )
        return self._parse(wire.CommitInfo, response)

    async def abandon_commit(self, repo: str, ref: str) -> None:
        """Drop an open commit and everything staged in it."""
        await self._request("DELETE", f"/v1/repos/{seg(repo)}/commits/{seg(ref)}")

    async def inspect_commit(self, repo: str, ref: str) -> CommitInfo:
        response = await self._request("GET", f"/v1/repos/{seg(repo)}/commits/{seg(ref)}")
        return self._parse(wire.CommitInfo, response)

    async def list_commits_page(
        self,
        repo: str,
        *,
        branch: str | None = None,
        state: Literal["open", "finished"] | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[CommitInfo]:
        """One page of the repo's commits, newest first; pass ``next_cursor`` on for the next."""
        query = params(branch=branch, state=state, limit=limit, cursor=cursor)
        response = await self._request("GET", f"/v1/repos/{seg(repo)}/commits", params=query)
        return self._parse(wire.Page[wire.CommitInfo], response)

    async def list_commits(
        self,
        repo: str,
        *,
        branch: str | None = None,
        state: Literal["open", "finished"] | None = None,
        page_size: int = 100,
    ) -> AsyncGenerator[CommitInfo, None]:
        """Every commit of the repo (optionally of one branch or state), newest first."""
        cursor: str | None = None
        while True:
            page = await self.list_commits_page(
                repo, branch=branch, state=state, limit=page_size, cursor=cursor
            )
            for commit in page.items:
                yield commit
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def log_page(
        self, repo: str, ref: str, *, limit: int = 100, cursor: str | None = None
    ) -> Page[CommitInfo]:
        """One page of the ref's commit and its ancestors, newest first."""
        response = await self._request(
            "GET",
            f"/v1/repos/{seg(repo)}/commits/{seg(ref)}/log",
            params=params(limit=limit, cursor=cursor),
        )
        return self._parse(wire.Page[wire.CommitInfo], response)

    async def log(
        self, repo: str, ref: str, *, page_size: int = 100
    ) -> AsyncGenerator[CommitInfo, None]:
        """The ref's commit and all its ancestors, newest first."""
        cursor: str | None = None
        while True:
            page = await self.log_page(repo, ref, limit=page_size, cursor=cursor)
            for commit in page.items:
                yield commit
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def diff(
        self, repo: str, ref: str, from_ref: str | None = None, path: str = "/"
    ) -> DiffResult:
        """Files added, deleted or modified from ``from_ref`` (default: the parent) to ``ref``."""
        response = await self._request(
            "GET",
            f"/v1/repos/{seg(repo)}/commits/{seg(ref)}/diff",
            params=params(**{"from": from_ref, "path": path}),
        )
        return self._parse(wire.DiffResult, response)

    async def history(self, repo: str, ref: str, path: str, limit: int = 100) -> list[HistoryEntry]:
        """The commits among the ref's last ``limit`` ancestors where ``path`` changed."""
        response = await self._request(
            "GET",
            f"/v1/repos/{seg(repo)}/commits/{seg(ref)}/history",
            params={"path": path, "limit": limit},
        )
        return self._parse_list(wire.HistoryEntry, response)

    # --- files -------------------------------------------------------------------------------

    async def put_file(
        self,
        repo: str,
        ref: str,
        path: str,
        source: FileSource,
        *,
        size: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> PutResult:
        """Stream one file of any size into an open commit, replacing any file at ``path``.

        ``source`` is the content, a local file (read piece by piece), or an async iterable
        of bytes; give ``size`` with an iterable so that the server can tell a cut-off upload
        from a complete one.
        """
        body: bytes | AsyncIterable[bytes]
        if isinstance(source, bytes):
            body, size = source, len(source)
        elif isinstance(source, Path):
            size = (await anyio.Path(source).stat()).st_size
            body = _read_file(source, size, progress)
        else:
            body = _counted(source, progress)
        headers = {"Content-Type": "application/octet-stream"}
        if size is not None:
            headers["Content-Length"] = str(size)
        response = await self._request(
            "PUT",
            f"/v1/repos/{seg(repo)}/commits/{seg(ref)}/file",
            params={"path": path},
            content=body,
            headers=headers,
        )
        if isinstance(source, bytes) and progress is not None:
            progress(len(source))
        return self._parse(wire.PutResult, response)

    async def put_files(
        self,
        repo: str,
        ref: str,
        files: Iterable[tuple[str, bytes | Path]],
        *,
        prefix: str = "/",
        progress: ProgressCallback | None = None,
    ) -> PutResult:
        """Put many (small) files in one request, all or none: ``files`` are (path, content or
        local file) pairs, paths relative to ``prefix``. The tar archive the server takes is
        generated while it is sent, so nothing is read ahead or spooled."""
        pairs = list(files)
        if not pairs:
            raise InvalidArgument("put_files needs at least one file")
        if all(isinstance(content, bytes) for _, content in pairs):
            batch = batches.members(pairs)
        else:
            batch = await anyio.to_thread.run_sync(batches.members, pairs)
        response = await self._request(
            "POST",
            f"/v1/repos/{seg(repo)}/commits/{seg(ref)}/files",
            params={"prefix": prefix},
            content=batches.tar_stream(batch, progress),
            headers={
                "Content-Type": "application/x-tar",
                "Content-Length": str(batches.stream_length(batch)),
            },
        )
        return self._parse(wire.PutResult, response)

    async def subvenance(self, repo: str, ref: str) -> list[CommitRef]:
        """The commits, in any repo, whose provenance names this commit (lineage down)."""
        response = await self._request(
            "GET", f"/v1/repos/{seg(repo)}/commits/{seg(ref)}/subvenance"
        )
        return self._parse_list(wire.CommitRef, response)

    async def link_files(self, repo: str, ref: str, files: Iterable[tuple[str, str]]) -> PutResult:
        """Put files whose contents the service already stores, as (path, content hash) pairs:
        a copy that moves no bytes."""
        response = await self._request(
            "POST",
            f"/v1/repos/{seg(repo)}/commits/{seg(ref)}/links",
            json={"files": [{"path": path, "hash": digest} for path, digest in files]},
        )
        return self._parse(wire.PutResult, response)

    async def delete_file(self, repo: str, ref: str, path: str) -> None:
        """Delete a file, or a directory with everything in it, from an open commit."""
        await self._request(
            "DELETE", f"/v1/repos/{seg(repo)}/commits/{seg(ref)}/file", params={"path": path}
        )

    async def get_file(
        self, repo: str, ref: str, path: str, *, offset: int = 0, length: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        """The file's contents as they arrive; ``offset`` and ``length`` select a byte range.

        The response stays open until the iterator is exhausted or closed; wrap it in
        ``contextlib.aclosing`` when you may stop early.
        """
        if length == 0:
            return
        url = f"/v1/repos/{seg(repo)}/commits/{seg(ref)}/file"
        headers = _range_header(offset, length)
        async with self._stream("GET", url, params={"path": path}, headers=headers) as response:
            try:
                async for piece in response.aiter_bytes():
                    yield piece
            except httpx.TransportError as e:
                raise self._unavailable(e) from e

    def get_file_blocking(
        self, repo: str, ref: str, path: str, *, offset: int = 0, length: int | None = None
    ) -> Generator[bytes, None, None]:
        """:meth:`get_file` read on the calling thread, which it blocks (see
        ``_stream_blocking``: for a thread that reads a large file ahead of its consumer).
        Close the generator when you stop early. Only where :attr:`can_block`."""
        if length == 0:
            return
        url = f"/v1/repos/{seg(repo)}/commits/{seg(ref)}/file"
        headers = _range_header(offset, length)
        with self._stream_blocking("GET", url, params={"path": path},
                                   headers=headers) as response:
            yield from response.stream(_BLOCKING_PIECE)

    async def get_tree(
        self, repo: str, ref: str, path: str, destination: Path, *, skip_existing: bool = False
    ) -> tuple[Extracted, int]:
        """Download the files at or under ``path`` into ``destination`` in one tar stream;
        with ``skip_existing``, files already there with the same content are not sent again.
        Returns what was written and how many files were skipped."""
        have = {}
        if skip_existing:
            have = await anyio.to_thread.run_sync(tarstream.local_hashes, destination)
        url = f"/v1/repos/{seg(repo)}/commits/{seg(ref)}/tar"
        async with self._stream("POST", url, json={"path": path, "skip": have}) as response:
            skipped = int(response.headers.get("X-Tusk-Skipped", "0"))
            extracted = await tarstream.extract(response.aiter_bytes(), destination)
        return extracted, skipped

    async def stat(self, repo: str, ref: str, path: str = "/") -> FileInfo:
        response = await self._request(
            "GET", f"/v1/repos/{seg(repo)}/commits/{seg(ref)}/stat", params={"path": path}
        )
        return self._parse(wire.FileInfo, response)

    async def list_dir(
        self, repo: str, ref: str, path: str = "/", *, page_size: int = 10_000
    ) -> AsyncGenerator[FileInfo, None]:
        """The entries of a directory, by name."""
        cursor: str | None = None
        while True:
            response = await self._request(
                "GET",
                f"/v1/repos/{seg(repo)}/commits/{seg(ref)}/list",
                params=params(path=path, limit=page_size, cursor=cursor),
            )
            page = self._parse(wire.Page[wire.FileInfo], response)
            for entry in page.items:
                yield entry
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def walk(self, repo: str, ref: str, path: str = "/") -> AsyncGenerator[FileInfo, None]:
        """Every file below a directory, in path order. Pass a commit id as ``ref`` so that a
        branch moving meanwhile cannot mix two commits' trees."""
        entries = [entry async for entry in self.list_dir(repo, ref, path)]
        for entry in entries:
            if entry.type == "dir":
                async for below in self.walk(repo, ref, entry.path):
                    yield below
            else:
                yield entry

    async def glob(self, repo: str, ref: str, pattern: str) -> list[FileInfo]:
        """Files and directories matching a pattern: ``*``, ``?``, ``[...]`` within a segment,
        ``**`` across directories (``/data/*.csv``, ``/**/*.json``)."""
        response = await self._request(
            "GET", f"/v1/repos/{seg(repo)}/commits/{seg(ref)}/glob", params={"pattern": pattern}
        )
        return self._parse_list(wire.FileInfo, response)


async def _counted(
    source: AsyncIterable[bytes], progress: ProgressCallback | None
) -> AsyncIterator[bytes]:
    async for piece in source:
        if progress is not None:
            progress(len(piece))
        yield piece


async def _read_file(
    path: Path, size: int, progress: ProgressCallback | None
) -> AsyncIterator[bytes]:
    """A local file piece by piece, insisting that it still has the size announced."""
    sent = 0
    async with await anyio.open_file(path, "rb") as file:
        while piece := await file.read(min(READ_SIZE, size - sent + 1)):
            sent += len(piece)
            if sent > size:
                break
            if progress is not None:
                progress(len(piece))
            yield piece
    if sent != size:
        raise InvalidArgument(
            f"{path} changed size while it was being uploaded ({size} bytes announced, "
            f"{'more' if sent > size else sent} read); nothing was written"
        )


def _range_header(offset: int, length: int | None) -> dict[str, str]:
    if not offset and length is None:
        return {}
    last = "" if length is None else str(offset + length - 1)
    return {"Range": f"bytes={offset}-{last}"}


_BLOCKING_PIECE = 1 << 20
"""Bytes a piece of a blocking download: few enough pieces that their Python is nothing."""
