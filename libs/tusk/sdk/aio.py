"""``tusk.AsyncClient``: every tusk service from one object, for async code.

It is built on the per-service clients of :mod:`tusk.client` (the ones the CLI and the workers
use), adding what a person at a notebook wants on top: addresses (``raw@master:/a.csv``)
instead of (repo, ref, path) triples, a commit context that finishes or abandons itself,
writes that open their own commit when the branch has none, waiting for jobs with progress,
lineage walks, and predictions as numpy arrays. :class:`tusk.Client` drives this class from a
thread of its own, so both have one implementation.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar, cast

import httpx

from tusk.client.config import ClientSettings
from tusk.client.inference import InferenceClient, ModelMetadata, RepositoryEntry
from tusk.client.models import (
    BranchInfo,
    CommitInfo,
    CommitRef,
    DiffResult,
    FileInfo,
    JobInfo,
    PipelineInfo,
    ProjectInfo,
    PutResult,
    RepoInfo,
)
from tusk.client.pipelines import SchedulerClient, TriggerClient
from tusk.client.registry import ModelRegistryClient, ModelSource
from tusk.client.repo import FileSource, RepoClient
from tusk.errors import Conflict, InvalidArgument, TuskError
from tusk.paths import Address, normalize_path, parse_address

if TYPE_CHECKING:
    from tusk.sdk.tensors import Prediction, TensorInput

T = TypeVar("T")

JobProgress = Callable[[JobInfo], None]
"""Called with the job each time its state or datum counts are fetched while waiting."""

_WAIT_POLL_SECONDS = 2.0


@dataclass(frozen=True)
class Target:
    """The open commit a write goes to; ``owned`` when the write opened it (and so finishes
    it, or abandons it on failure)."""

    repo: str
    commit: str
    branch: str | None
    owned: bool


class AsyncCommit:
    """An open commit: what ``async with client.commit("raw@master") as c`` gives."""

    def __init__(self, client: AsyncClient, info: CommitInfo) -> None:
        self._client = client
        self.info = info

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def repo(self) -> str:
        return self.info.repo

    async def put_file(self, path: str, data: FileSource | str, *, size: int | None = None
                       ) -> PutResult:
        """Put one file (bytes, text, a local :class:`~pathlib.Path` or an async iterable)."""
        content = data.encode() if isinstance(data, str) else data
        return await self._client.repo.put_file(self.repo, self.id, path, content, size=size)

    async def put_files(
        self, files: Mapping[str, bytes | Path] | Iterable[tuple[str, bytes | Path]],
        *, prefix: str = "/",
    ) -> PutResult:
        """Put many small files in one request, all or none."""
        pairs = list(files.items()) if isinstance(files, Mapping) else list(files)
        return await self._client.repo.put_files(self.repo, self.id, pairs, prefix=prefix)

    async def delete_file(self, path: str) -> None:
        await self._client.repo.delete_file(self.repo, self.id, path)

    async def read_file(self, path: str) -> bytes:
        """A file as it is in this open commit (staged puts included)."""
        return await self._client.read_file(f"{self.repo}@{self.id}:{path}")

    async def list_files(self, path: str = "/") -> list[FileInfo]:
        return await self._client.list_files(f"{self.repo}@{self.id}:{path}")


class AsyncClient:
    """Every tusk service from one object. Use as ``async with tusk.AsyncClient() as tc:``.

    Addresses are ``REPO@REF:/PATH`` (``raw@master:/data/a.csv``); REF is a branch or a commit
    id, optionally with ``^N`` / ``~N`` for ancestors, and defaults to ``master``.

    The services are found through the arguments, else ``TUSK_*_URL`` variables, else the
    current context (``tusk context use NAME``), else the local defaults of ``tusk up``.
    The per-service clients stay reachable as ``.repo``, ``.trigger``, ``.scheduler``,
    ``.inference`` and ``.models`` for anything not wrapped here.
    """

    def __init__(
        self,
        repo_url: str | None = None,
        *,
        trigger_url: str | None = None,
        scheduler_url: str | None = None,
        inference_url: str | None = None,
        token: str | None = None,
        timeout: float | None = None,
        context: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        given: dict[str, Any] = {
            "repo_url": repo_url, "trigger_url": trigger_url, "scheduler_url": scheduler_url,
            "inference_url": inference_url, "token": token, "timeout": timeout,
            "context": context,
        }
        self.settings = ClientSettings.load(**given)
        s = self.settings
        common: dict[str, Any] = {"timeout": s.timeout, "transport": transport}
        self.repo = RepoClient(s.repo_url, s.token, **common)
        self.trigger = TriggerClient(s.trigger_url, s.token, **common)
        self.scheduler = SchedulerClient(s.scheduler_url, s.token, **common)
        self.inference = InferenceClient(s.inference_url, s.token, **common)
        self.models = ModelRegistryClient(s.inference_url, s.token, **common)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for client in (self.repo, self.trigger, self.scheduler, self.inference, self.models):
            await client.aclose()

    # --- projects ----------------------------------------------------------------------------

    async def create_project(self, name: str, description: str = "") -> ProjectInfo:
        """A namespace of repos and pipelines: its repos are then named ``name/REPO``."""
        return await self.repo.create_project(name, description)

    async def list_projects(self) -> list[ProjectInfo]:
        return await self.repo.list_projects()

    async def delete_project(self, name: str) -> None:
        await self.repo.delete_project(name)

    # --- repos and branches ------------------------------------------------------------------

    async def create_repo(self, name: str, description: str = "", *, exist_ok: bool = False
                          ) -> RepoInfo:
        """Create a repo; with ``exist_ok`` an existing one is returned instead (idempotent)."""
        from tusk.errors import AlreadyExists

        try:
            return await self.repo.create_repo(name, description)
        except AlreadyExists:
            if not exist_ok:
                raise
            return await self.repo.inspect_repo(name)

    async def list_repos(self) -> list[RepoInfo]:
        return await self.repo.list_repos()

    async def inspect_repo(self, name: str) -> RepoInfo:
        return await self.repo.inspect_repo(name)

    async def delete_repo(self, name: str, *, force: bool = False) -> None:
        await self.repo.delete_repo(name, force=force)

    async def create_branch(self, address: str, head: str | None = None) -> BranchInfo:
        """``create_branch("raw@dev", head="master^1")``."""
        a = _address(address)
        return await self.repo.create_branch(a.repo, _branch(a, "create_branch"), head)

    async def list_branches(self, repo: str) -> list[BranchInfo]:
        return await self.repo.list_branches(repo)

    async def delete_branch(self, address: str) -> None:
        a = _address(address)
        await self.repo.delete_branch(a.repo, _branch(a, "delete_branch"))

    # --- commits -----------------------------------------------------------------------------

    async def start_commit(
        self, address: str, *, description: str = "",
        provenance: Iterable[CommitRef] = (), global_id: str | None = None,
    ) -> CommitInfo:
        a = _address(address)
        return await self.repo.start_commit(
            a.repo, _branch(a, "start_commit"), description=description,
            provenance=provenance, global_id=global_id,
        )

    async def finish_commit(self, address: str, *, error: str | None = None) -> CommitInfo:
        a = _address(address)
        return await self.repo.finish_commit(a.repo, str(a.ref_or_default), error=error)

    async def abandon_commit(self, address: str) -> None:
        a = _address(address)
        await self.repo.abandon_commit(a.repo, str(a.ref_or_default))

    async def inspect_commit(self, address: str) -> CommitInfo:
        a = _address(address)
        return await self.repo.inspect_commit(a.repo, str(a.ref_or_default))

    async def log(self, address: str, *, limit: int | None = None) -> list[CommitInfo]:
        """The commit and its ancestors, newest first (at most ``limit``)."""
        a = _address(address)
        commits: list[CommitInfo] = []
        async with aclosing(self.repo.log(a.repo, str(a.ref_or_default))) as pages:
            async for info in pages:
                commits.append(info)
                if limit is not None and len(commits) >= limit:
                    break
        return commits

    @asynccontextmanager
    async def commit(self, address: str, *, description: str = "") -> AsyncIterator[AsyncCommit]:
        """A new commit on a branch, finished when the block ends and abandoned (nothing
        written) when it raises: ``async with tc.commit("raw@master") as c: await
        c.put_file("/a.csv", data)``. The finished commit is then ``c.info``."""
        info = await self.start_commit(address, description=description)
        handle = AsyncCommit(self, info)
        try:
            yield handle
        except BaseException:
            await self._abandon_quietly(info.repo, info.id)
            raise
        handle.info = await self.repo.finish_commit(info.repo, info.id)

    async def _abandon_quietly(self, repo: str, commit: str) -> None:
        # The block's own error matters more than a failure to clean up after it.
        with contextlib.suppress(TuskError):
            await asyncio.shield(self.repo.abandon_commit(repo, commit))

    @asynccontextmanager
    async def writing(self, address: str, *, description: str = "") -> AsyncIterator[Target]:
        """The open commit a write goes to: an open commit's id, the branch's open commit
        (joined, left open), or one opened here and finished when the block succeeds."""
        a = _address(address)
        ref = a.ref_or_default
        if ref.ancestry:
            raise InvalidArgument(
                f"cannot write to {a.repo}@{ref}: name a branch or an open commit's id"
            )
        if ref.is_commit_id:
            info = await self.repo.inspect_commit(a.repo, ref.base)
            if info.state != "open":
                raise Conflict(f"commit {info.id} is finished; write to a branch instead")
            yield Target(a.repo, info.id, info.branch, owned=False)
            return
        existing = await self.open_commit(a.repo, ref.base)
        if existing is not None:
            yield Target(a.repo, existing.id, ref.base, owned=False)
            return
        try:
            started = await self.repo.start_commit(a.repo, ref.base, description=description)
        except Conflict:
            # Someone opened one between our look and our start: write into theirs.
            existing = await self.open_commit(a.repo, ref.base)
            if existing is None:
                raise
            yield Target(a.repo, existing.id, ref.base, owned=False)
            return
        try:
            yield Target(a.repo, started.id, ref.base, owned=True)
        except BaseException:
            await self._abandon_quietly(a.repo, started.id)
            raise
        await self.repo.finish_commit(a.repo, started.id)

    async def open_commit(self, repo: str, branch: str) -> CommitInfo | None:
        """The branch's open commit, if it has one."""
        page = await self.repo.list_commits_page(repo, branch=branch, state="open", limit=1)
        return page.items[0] if page.items else None

    # --- files -------------------------------------------------------------------------------

    async def read_file(self, address: str, *, offset: int = 0, length: int | None = None
                        ) -> bytes:
        """A file's contents (or ``length`` bytes from ``offset``)."""
        pieces = [p async for p in self.stream_file(address, offset=offset, length=length)]
        return b"".join(pieces)

    async def stream_file(
        self, address: str, *, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        """A file's contents piece by piece, for files larger than memory."""
        a = _address(address)
        async with aclosing(
            self.repo.get_file(a.repo, str(a.ref_or_default), _path(a), offset=offset,
                               length=length)
        ) as pieces:
            async for piece in pieces:
                yield piece

    async def write_file(
        self, address: str, data: FileSource | str, *, size: int | None = None,
        description: str = "",
    ) -> PutResult:
        """Write one file: into the branch's open commit if it has one, else in a commit of
        its own, finished at once (so a reader sees the file as soon as this returns)."""
        content = data.encode() if isinstance(data, str) else data
        a = _address(address)
        path = _path(a)
        async with self.writing(address, description=description) as target:
            return await self.repo.put_file(a.repo, target.commit, path, content, size=size)

    async def copy_file(self, source: str, destination: str) -> PutResult:
        """Copy a file (from any repo and commit) without moving its bytes: the destination
        names the stored content. Written as :meth:`write_file` writes."""
        info = await self.stat(source)
        if info.type != "file":
            raise InvalidArgument(f"{source} is a directory; copy its files one by one")
        a = _address(destination)
        path = _path(a)
        async with self.writing(destination) as target:
            return await self.repo.link_files(a.repo, target.commit, [(path, info.hash)])

    async def delete_file(self, address: str) -> None:
        """Delete a file or directory, in the open commit or in a commit of its own."""
        a = _address(address)
        async with self.writing(address) as target:
            await self.repo.delete_file(a.repo, target.commit, _path(a))

    async def stat(self, address: str) -> FileInfo:
        a = _address(address)
        return await self.repo.stat(a.repo, str(a.ref_or_default), a.path or "/")

    async def list_files(self, address: str) -> list[FileInfo]:
        """The entries of a directory (``raw@master:/data``)."""
        a = _address(address)
        return [e async for e in self.repo.list_dir(a.repo, str(a.ref_or_default), a.path or "/")]

    async def walk(self, address: str) -> list[FileInfo]:
        """Every file below a directory, in path order, from one commit."""
        a = _address(address)
        commit = (await self.repo.inspect_commit(a.repo, str(a.ref_or_default))).id
        return [e async for e in self.repo.walk(a.repo, commit, a.path or "/")]

    async def glob(self, address: str, pattern: str | None = None) -> list[FileInfo]:
        """Files matching a pattern: ``glob("raw@master", "/data/*.csv")``, or the pattern as
        the address's path (``glob("raw@master:/**/*.json")``)."""
        a = _address(address)
        pattern = pattern or a.path
        if not pattern:
            raise InvalidArgument("glob needs a pattern, e.g. '/data/*.csv'")
        return await self.repo.glob(a.repo, str(a.ref_or_default), pattern)

    async def diff(self, address: str, from_ref: str | None = None) -> DiffResult:
        """What changed from ``from_ref`` (default: the parent) to the address's commit, below
        its path."""
        a = _address(address)
        return await self.repo.diff(a.repo, str(a.ref_or_default), from_ref, a.path or "/")

    # --- pipelines and jobs ------------------------------------------------------------------

    async def create_pipeline(self, spec: str | bytes | Path | Mapping[str, Any]
                              ) -> PipelineInfo:
        """A pipeline from its spec: YAML/JSON text, a file, or a dict."""
        return await self.trigger.create_pipeline(_spec_text(spec))

    async def update_pipeline(
        self, name: str, spec: str | bytes | Path | Mapping[str, Any], *, reprocess: bool = False
    ) -> PipelineInfo:
        return await self.trigger.update_pipeline(name, _spec_text(spec), reprocess=reprocess)

    async def list_pipelines(self) -> list[PipelineInfo]:
        return await self.trigger.list_pipelines()

    async def inspect_pipeline(self, name: str) -> PipelineInfo:
        return await self.trigger.inspect_pipeline(name)

    async def delete_pipeline(self, name: str, *, keep_repo: bool = False) -> None:
        await self.trigger.delete_pipeline(name, keep_repo=keep_repo)

    async def list_jobs(self, *, pipeline: str | None = None, state: str | None = None,
                        limit: int = 100) -> list[JobInfo]:
        """The newest jobs (at most ``limit``)."""
        jobs: list[JobInfo] = []
        listed = _generator(self.trigger.list_jobs(pipeline=pipeline, state=state))
        async with aclosing(listed) as found:
            async for job in found:
                jobs.append(job)
                if len(jobs) >= limit:
                    break
        return jobs

    async def inspect_job(self, job: str) -> JobInfo:
        return await self.trigger.inspect_job(job)

    async def find_job(
        self, pipeline: str, global_id: str, *, timeout: float = 60.0  # noqa: ASYNC109
    ) -> JobInfo:
        """The job of ``pipeline`` for one change (the global id of the commit you made),
        waiting up to ``timeout`` seconds for it to be created."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            async with aclosing(_generator(self.trigger.list_jobs(pipeline=pipeline))) as jobs:
                async for job in jobs:
                    if job.global_id == global_id:
                        return job
            if loop.time() >= deadline:
                raise TimeoutError(
                    f"no job of pipeline {pipeline} for change {global_id} within {timeout} s"
                )
            await asyncio.sleep(0.2)  # polling the job list: no event reaches a client

    async def wait_job(
        self,
        job: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 (the same call as the sync client's)
        progress: JobProgress | None = None,
    ) -> JobInfo:
        """The job once it ended; ``progress`` is called with it as its datums get done.
        Raises :class:`TimeoutError` after ``timeout`` seconds (default: no limit)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        info = await self.trigger.inspect_job(job)
        if progress is not None:
            progress(info)
        while not info.ended:
            left = _WAIT_POLL_SECONDS if deadline is None else deadline - loop.time()
            if left <= 0:
                raise TimeoutError(f"job {job} is still {info.state} after {timeout} s")
            # The server holds the call until the job changes, so this is not a busy poll.
            info = await self.trigger.wait_job(job, seconds=min(_WAIT_POLL_SECONDS, left))
            if progress is not None:
                progress(info)
        return info

    # --- lineage -----------------------------------------------------------------------------

    async def lineage(self, address: str, *, down: bool = False) -> list[CommitInfo]:
        """The commit and, breadth first, what it came from (or with ``down``, everything
        derived from it), each commit once."""
        a = _address(address)
        start = await self.repo.inspect_commit(a.repo, str(a.ref_or_default))
        queue: list[CommitRef] = [CommitRef(repo=start.repo, commit=start.id)]
        seen: set[tuple[str, str]] = set()
        found: list[CommitInfo] = []
        while queue:
            ref = queue.pop(0)
            info = await self.repo.inspect_commit(ref.repo, ref.commit)
            if (info.repo, info.id) in seen:
                continue
            seen.add((info.repo, info.id))
            found.append(info)
            queue.extend(await self.repo.subvenance(info.repo, info.id) if down
                         else info.provenance)
        return found

    # --- models ------------------------------------------------------------------------------

    async def list_models(self) -> list[RepositoryEntry]:
        return await self.inference.models()

    async def model(self, name: str, version: str | None = None) -> ModelMetadata:
        return await self.inference.model(name, version)

    async def add_model(self, name: str, source: str, *, replace: bool = False) -> ModelSource:
        """Serve ``source`` (``REPO@BRANCH:/path/model.onnx``) as ``name``, kept across restarts
        of the inference service."""
        return await self.models.add(name, source, replace=replace)

    async def remove_model(self, name: str) -> None:
        await self.models.remove(name)

    async def predict(
        self, model: str, inputs: TensorInput, *, version: str | None = None
    ) -> Prediction:
        """Run a model: ``inputs`` is an array (the model's single input) or a dict of them
        by input name. The answer's outputs are numpy arrays, with the model's lineage."""
        from tusk.sdk.tensors import encode_request, prediction

        if isinstance(inputs, Mapping):
            named: Mapping[str, Any] = inputs
        else:
            meta = await self.inference.model(model, version)
            if len(meta.inputs) != 1:
                names = ", ".join(t.name for t in meta.inputs)
                raise InvalidArgument(
                    f"model {model} takes {len(meta.inputs)} inputs ({names}); pass a dict"
                )
            named = {meta.inputs[0].name: inputs}
        response = await self.inference.infer(model, encode_request(named), version)
        return prediction(response)


def _generator(items: AsyncIterator[T]) -> AsyncGenerator[T, None]:
    # The service clients' listings are async generators, typed as iterators.
    return cast("AsyncGenerator[T, None]", items)


def _address(text: str) -> Address:
    return parse_address(text)


def _branch(address: Address, what: str) -> str:
    ref = address.ref_or_default
    if ref.ancestry or ref.is_commit_id:
        raise InvalidArgument(f"{what} needs a branch: write it as {address.repo}@BRANCH")
    return ref.base


def _path(address: Address) -> str:
    if not address.path:
        raise InvalidArgument(f"{address} names no file: add :/PATH")
    return normalize_path(address.path, allow_root=False)


def _spec_text(spec: str | bytes | Path | Mapping[str, Any]) -> str | bytes:
    if isinstance(spec, Path):
        return spec.read_bytes()
    if isinstance(spec, Mapping):
        return json.dumps(spec)
    return spec
