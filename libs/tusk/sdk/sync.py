"""``tusk.Client``: :class:`~tusk.sdk.aio.AsyncClient` for code that is not async.

Every call runs the async client's coroutine on a private event loop on a thread of its own
(:class:`~tusk.sdk.loop.LoopThread`), so it works in scripts and inside Jupyter's running loop
alike, and there is one implementation of each operation.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from tusk.client.inference import ModelMetadata, RepositoryEntry
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
from tusk.client.registry import ModelSource
from tusk.sdk.aio import AsyncClient, AsyncCommit, JobProgress
from tusk.sdk.loop import LoopThread

if TYPE_CHECKING:
    from tusk.sdk.tensors import Prediction, TensorInput


class Commit:
    """An open commit: what ``with client.commit("raw@master") as c`` gives."""

    def __init__(self, loop: LoopThread, handle: AsyncCommit) -> None:
        self._loop = loop
        self._handle = handle

    @property
    def id(self) -> str:
        return self._handle.id

    @property
    def info(self) -> CommitInfo:
        """The commit; once the ``with`` block ended, as finished."""
        return self._handle.info

    def put_file(self, path: str, data: bytes | str | Path, *, size: int | None = None
                 ) -> PutResult:
        return self._loop.run(self._handle.put_file(path, data, size=size))

    def put_files(self, files: Mapping[str, bytes | Path] | Iterable[tuple[str, bytes | Path]],
                  *, prefix: str = "/") -> PutResult:
        return self._loop.run(self._handle.put_files(files, prefix=prefix))

    def delete_file(self, path: str) -> None:
        self._loop.run(self._handle.delete_file(path))

    def read_file(self, path: str) -> bytes:
        return self._loop.run(self._handle.read_file(path))

    def list_files(self, path: str = "/") -> list[FileInfo]:
        return self._loop.run(self._handle.list_files(path))


class Client:
    """Every tusk service from one object, for scripts and notebooks::

        import tusk
        tc = tusk.Client()                       # TUSK_*_URL, the current context, or local
        with tc.commit("raw@master") as c:       # finished at the end, abandoned on error
            c.put_file("/day-1.csv", df.to_csv(index=False))
        tc.read_file("raw@master:/day-1.csv")

    Takes the same arguments as :class:`tusk.AsyncClient`; ``client.aio`` is that client.
    Close it with :meth:`close` or use it as a context manager.
    """

    def __init__(self, repo_url: str | None = None, **options: Any) -> None:
        self._loop = LoopThread()
        try:
            # Built on the loop's thread: its HTTP clients belong to that loop.
            self.aio: AsyncClient = self._loop.run(_build(repo_url, options))
        except BaseException:
            self._loop.close()
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if not self._loop.loop.is_closed():
            self._loop.run(self.aio.aclose())
            self._loop.close()

    # --- projects ----------------------------------------------------------------------------

    def create_project(self, name: str, description: str = "") -> ProjectInfo:
        return self._loop.run(self.aio.create_project(name, description))

    def list_projects(self) -> list[ProjectInfo]:
        return self._loop.run(self.aio.list_projects())

    def delete_project(self, name: str) -> None:
        self._loop.run(self.aio.delete_project(name))

    # --- repos and branches ------------------------------------------------------------------

    def create_repo(self, name: str, description: str = "", *, exist_ok: bool = False
                    ) -> RepoInfo:
        return self._loop.run(self.aio.create_repo(name, description, exist_ok=exist_ok))

    def list_repos(self) -> list[RepoInfo]:
        return self._loop.run(self.aio.list_repos())

    def inspect_repo(self, name: str) -> RepoInfo:
        return self._loop.run(self.aio.inspect_repo(name))

    def delete_repo(self, name: str, *, force: bool = False) -> None:
        self._loop.run(self.aio.delete_repo(name, force=force))

    def create_branch(self, address: str, head: str | None = None) -> BranchInfo:
        return self._loop.run(self.aio.create_branch(address, head))

    def list_branches(self, repo: str) -> list[BranchInfo]:
        return self._loop.run(self.aio.list_branches(repo))

    def delete_branch(self, address: str) -> None:
        self._loop.run(self.aio.delete_branch(address))

    # --- commits -----------------------------------------------------------------------------

    def start_commit(self, address: str, *, description: str = "",
                     provenance: Iterable[CommitRef] = (), global_id: str | None = None
                     ) -> CommitInfo:
        return self._loop.run(self.aio.start_commit(
            address, description=description, provenance=provenance, global_id=global_id
        ))

    def finish_commit(self, address: str, *, error: str | None = None) -> CommitInfo:
        return self._loop.run(self.aio.finish_commit(address, error=error))

    def abandon_commit(self, address: str) -> None:
        self._loop.run(self.aio.abandon_commit(address))

    def inspect_commit(self, address: str) -> CommitInfo:
        return self._loop.run(self.aio.inspect_commit(address))

    def log(self, address: str, *, limit: int | None = None) -> list[CommitInfo]:
        return self._loop.run(self.aio.log(address, limit=limit))

    @contextmanager
    def commit(self, address: str, *, description: str = "") -> Iterator[Commit]:
        """A new commit on a branch, finished when the block ends, abandoned if it raises."""
        manager = self.aio.commit(address, description=description)
        handle = self._loop.run(manager.__aenter__())
        try:
            yield Commit(self._loop, handle)
        except BaseException as e:
            self._loop.run(manager.__aexit__(type(e), e, e.__traceback__))
            raise
        self._loop.run(manager.__aexit__(None, None, None))

    # --- files -------------------------------------------------------------------------------

    def read_file(self, address: str, *, offset: int = 0, length: int | None = None) -> bytes:
        return self._loop.run(self.aio.read_file(address, offset=offset, length=length))

    def stream_file(self, address: str, *, offset: int = 0, length: int | None = None
                    ) -> Iterator[bytes]:
        """A file's contents piece by piece; close the iterator if you stop early."""
        return self._loop.iterate(self.aio.stream_file(address, offset=offset, length=length))

    def write_file(self, address: str, data: bytes | str | Path, *, size: int | None = None,
                   description: str = "") -> PutResult:
        return self._loop.run(
            self.aio.write_file(address, data, size=size, description=description)
        )

    def copy_file(self, source: str, destination: str) -> PutResult:
        return self._loop.run(self.aio.copy_file(source, destination))

    def delete_file(self, address: str) -> None:
        self._loop.run(self.aio.delete_file(address))

    def stat(self, address: str) -> FileInfo:
        return self._loop.run(self.aio.stat(address))

    def list_files(self, address: str) -> list[FileInfo]:
        return self._loop.run(self.aio.list_files(address))

    def walk(self, address: str) -> list[FileInfo]:
        return self._loop.run(self.aio.walk(address))

    def glob(self, address: str, pattern: str | None = None) -> list[FileInfo]:
        return self._loop.run(self.aio.glob(address, pattern))

    def diff(self, address: str, from_ref: str | None = None) -> DiffResult:
        return self._loop.run(self.aio.diff(address, from_ref))

    # --- pipelines and jobs ------------------------------------------------------------------

    def create_pipeline(self, spec: str | bytes | Path | Mapping[str, Any]) -> PipelineInfo:
        return self._loop.run(self.aio.create_pipeline(spec))

    def update_pipeline(self, name: str, spec: str | bytes | Path | Mapping[str, Any], *,
                        reprocess: bool = False) -> PipelineInfo:
        return self._loop.run(self.aio.update_pipeline(name, spec, reprocess=reprocess))

    def list_pipelines(self) -> list[PipelineInfo]:
        return self._loop.run(self.aio.list_pipelines())

    def inspect_pipeline(self, name: str) -> PipelineInfo:
        return self._loop.run(self.aio.inspect_pipeline(name))

    def delete_pipeline(self, name: str, *, keep_repo: bool = False) -> None:
        self._loop.run(self.aio.delete_pipeline(name, keep_repo=keep_repo))

    def list_jobs(self, *, pipeline: str | None = None, state: str | None = None,
                  limit: int = 100) -> list[JobInfo]:
        return self._loop.run(self.aio.list_jobs(pipeline=pipeline, state=state, limit=limit))

    def inspect_job(self, job: str) -> JobInfo:
        return self._loop.run(self.aio.inspect_job(job))

    def find_job(self, pipeline: str, global_id: str, *, timeout: float = 60.0) -> JobInfo:
        return self._loop.run(self.aio.find_job(pipeline, global_id, timeout=timeout))

    def wait_job(self, job: str, *, timeout: float | None = None,
                 progress: JobProgress | None = None) -> JobInfo:
        """The job once it ended; ``progress(job)`` is called (on the client's thread) as its
        datums get done."""
        return self._loop.run(self.aio.wait_job(job, timeout=timeout, progress=progress))

    # --- lineage and models ------------------------------------------------------------------

    def lineage(self, address: str, *, down: bool = False) -> list[CommitInfo]:
        return self._loop.run(self.aio.lineage(address, down=down))

    def list_models(self) -> list[RepositoryEntry]:
        return self._loop.run(self.aio.list_models())

    def model(self, name: str, version: str | None = None) -> ModelMetadata:
        return self._loop.run(self.aio.model(name, version))

    def add_model(self, name: str, source: str, *, replace: bool = False) -> ModelSource:
        return self._loop.run(self.aio.add_model(name, source, replace=replace))

    def remove_model(self, name: str) -> None:
        self._loop.run(self.aio.remove_model(name))

    def predict(self, model: str, inputs: TensorInput, *, version: str | None = None
                ) -> Prediction:
        return self._loop.run(self.aio.predict(model, inputs, version=version))


async def _build(repo_url: str | None, options: dict[str, Any]) -> AsyncClient:
    return AsyncClient(repo_url, **options)
