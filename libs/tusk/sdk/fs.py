"""``tusk://REPO@REF/PATH`` for fsspec, and so for pandas, polars, DuckDB, Dask, PyArrow…

``pd.read_csv("tusk://raw@master/day-1.csv")`` reads the branch's head;
``tusk://raw@<commit id>/…`` reads one commit, which never changes. A write
(``df.to_parquet("tusk://features@master/f.parquet")``) goes into the branch's open commit when
it has one (so many writes can make one commit: ``tusk commit start`` first, ``tusk commit
finish`` after), else into a commit of its own, finished when the file is closed. REF defaults
to master (``tusk://raw/day-1.csv``).

Registered as the ``tusk`` protocol through the ``fsspec.specs`` entry point; the services are
found as :class:`tusk.Client` finds them (``repo_url=``/``token=`` storage options, TUSK_*
variables, the current context).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

from tusk.client.models import FileInfo
from tusk.errors import InvalidArgument, NotFound
from tusk.paths import parse_address
from tusk.sdk.prefetch import Prefetch
from tusk.sdk.sync import Client

DEFAULT_BLOCK_SIZE = 16 << 20
"""fsspec's block size: what a write buffers before spooling it, and a read's block when a
block cache is asked for (``cache_type=``)."""


class TuskFileSystem(AbstractFileSystem):  # type: ignore[misc]
    protocol = "tusk"
    root_marker = ""
    # One instance per set of storage options; its client holds a connection pool.
    cachable = True

    def __init__(self, repo_url: str | None = None, token: str | None = None,
                 context: str | None = None, **storage_options: Any) -> None:
        super().__init__(**storage_options)
        options = {k: v for k, v in {"token": token, "context": context}.items() if v}
        self.client = Client(repo_url, **options)

    # --- paths -------------------------------------------------------------------------------

    @classmethod
    def _strip_protocol(cls, path: str | list[str]) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = str(path)
        if path.startswith("tusk://"):
            path = path[len("tusk://"):]
        return path.rstrip("/")

    @staticmethod
    def _split(path: str) -> tuple[str, str, str]:
        """(repo, ref, /path) of ``repo@ref/path``."""
        head, _, rest = path.partition("/")
        if not head:
            raise InvalidArgument(f"tusk path {path!r} names no repo: tusk://REPO@REF/PATH")
        address = parse_address(head)
        return address.repo, str(address.ref_or_default), "/" + rest

    def _address(self, path: str) -> str:
        repo, ref, file = self._split(self._strip_protocol(path))
        return f"{repo}@{ref}:{file}"

    def _entry(self, repo: str, ref: str, info: FileInfo) -> dict[str, Any]:
        return {
            "name": f"{repo}@{ref}{info.path}".rstrip("/"),
            "size": info.size_bytes,
            "type": "directory" if info.type == "dir" else "file",
            "hash": info.hash,
        }

    # --- reading -----------------------------------------------------------------------------

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        path = self._strip_protocol(path)
        if not path:
            repos = self.client.list_repos()
            entries: list[dict[str, Any]] = [
                {"name": r.name, "size": 0, "type": "directory"} for r in repos
            ]
        else:
            repo, ref, file = self._split(path)
            info = self.client.stat(f"{repo}@{ref}:{file}")
            if info.type == "file":
                entries = [self._entry(repo, ref, info)]
            else:
                listed = self.client.list_files(f"{repo}@{ref}:{file}")
                entries = [self._entry(repo, ref, e) for e in listed]
        return entries if detail else [e["name"] for e in entries]

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        path = self._strip_protocol(path)
        if not path:
            return {"name": "", "size": 0, "type": "directory"}
        repo, ref, file = self._split(path)
        try:
            stat = self.client.stat(f"{repo}@{ref}:{file}")
        except NotFound:
            raise FileNotFoundError(path) from None
        entry = self._entry(repo, ref, stat)
        entry["name"] = path  # as asked (the ref as written, not resolved)
        return entry

    def modified(self, path: str) -> datetime:
        """When the commit that holds the file was finished (files have no times of their
        own: a commit is the unit of change)."""
        self.info(path)  # FileNotFoundError for a missing file
        repo, ref, _ = self._split(self._strip_protocol(path))
        commit = self.client.inspect_commit(f"{repo}@{ref}")
        return commit.finished_at or commit.started_at

    def created(self, path: str) -> datetime:
        return self.modified(path)

    def ukey(self, path: str) -> str:
        return str(self.info(path)["hash"])

    def cat_file(self, path: str, start: int | None = None, end: int | None = None,
                 **kwargs: Any) -> bytes:
        size = None
        if (start is not None and start < 0) or (end is not None and end < 0):
            size = self.info(path)["size"]
        offset = _position(start, size) if start is not None else 0
        stop = _position(end, size) if end is not None else None
        if stop is not None and stop <= offset:
            return b""
        pieces = self._stream(path, offset, None if stop is None else stop - offset)
        try:
            return b"".join(pieces)
        except NotFound:
            raise FileNotFoundError(path) from None

    def _stream(self, path: str, offset: int, length: int | None = None) -> Iterator[bytes]:
        """``length`` bytes of the file from ``offset`` (to its end by default), read on the
        calling thread: on a blocking connection (large pieces, few turns at the GIL), or
        through the client's loop when it has a transport of the caller's."""
        repo, ref, file = self._split(self._strip_protocol(path))
        if self.client.aio.repo.can_block:
            return self.client.aio.repo.get_file_blocking(repo, ref, file, offset=offset,
                                                          length=length)
        return self.client.stream_file(f"{repo}@{ref}:{file}", offset=offset, length=length)

    def glob(self, path: str, maxdepth: int | None = None, **kwargs: Any) -> Any:
        """Matched by the repo service in one call (``*``, ``?``, ``[…]``, ``**``)."""
        if maxdepth is not None:
            return super().glob(path, maxdepth=maxdepth, **kwargs)
        stripped = self._strip_protocol(path)
        repo, ref, pattern = self._split(stripped)
        matches = self.client.glob(f"{repo}@{ref}", pattern)
        entries = {e["name"]: e for e in (self._entry(repo, ref, m) for m in matches)}
        return entries if kwargs.get("detail") else sorted(entries)

    def _open(self, path: str, mode: str = "rb", block_size: int | None = None,
              autocommit: bool = True, cache_options: dict[str, Any] | None = None,
              **kwargs: Any) -> TuskFile:
        return TuskFile(
            self, path, mode, block_size=block_size or DEFAULT_BLOCK_SIZE,
            autocommit=autocommit, cache_options=cache_options,
            cache_type=kwargs.pop("cache_type", "none"), **kwargs,
        )

    # --- writing -----------------------------------------------------------------------------

    def pipe_file(self, path: str, value: bytes, **kwargs: Any) -> None:
        self.client.write_file(self._address(path), value)
        self.invalidate_cache(self._parent(path))

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        """A server-side copy: no bytes move (so ``mv`` is a copy and a delete)."""
        try:
            self.client.copy_file(self._address(path1), self._address(path2))
        except NotFound:
            raise FileNotFoundError(path1) from None
        self.invalidate_cache(self._parent(path2))

    def rm_file(self, path: str) -> None:
        try:
            self.client.delete_file(self._address(path))
        except NotFound:
            raise FileNotFoundError(path) from None
        self.invalidate_cache(self._parent(path))

    def _rm(self, path: str) -> None:
        self.rm_file(path)

    def rm(self, path: str | list[str], recursive: bool = False,
           maxdepth: int | None = None) -> None:
        # A directory goes with everything in it in one call (and one commit).
        for p in [path] if isinstance(path, str) else path:
            self.rm_file(p)

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        """Directories exist through the files in them: nothing to do."""

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        """Directories exist through the files in them: nothing to do."""


class TuskFile(AbstractBufferedFile):  # type: ignore[misc]
    """Reads from the start of the file, or on from where the last read ended, are served by
    one streamed GET for the rest of the file, read ahead on a thread while the caller works
    (:class:`~tusk.sdk.prefetch.Prefetch`: at most 64 MiB ahead, so a file of any size costs
    bounded memory); a jump (a Parquet footer, a column chunk) fetches just the range asked
    for. fsspec's block cache is off by default (``cache_type="none"``): the stream is the
    read-ahead, and the cache's blocks were two more copies of every byte.

    Writes are spooled to a local temporary file and sent as one streamed upload when the file
    is closed (so a failed write leaves no half file)."""

    fs: TuskFileSystem

    _prefetch: Prefetch | None = None
    _last_end = -1

    def _fetch_range(self, start: int, end: int) -> bytes:
        end = min(end, self.size)
        if start >= end:
            return b""
        stream = self._prefetch
        if stream is None or stream.position != start:
            if stream is not None:
                stream.close()
                self._prefetch = None
            if start not in (0, self._last_end):
                # A jump (a Parquet footer, a column): just the range asked for.
                self._last_end = end
                return self.fs.cat_file(self.path, start, end)
            # From the start, or on from the last read: a reader going through the file.
            # One GET for the rest of it, read ahead while the caller works on this part.
            self._prefetch = stream = Prefetch(self.fs._stream(self.path, start), start)
        try:
            data = stream.read(end - start)
        except NotFound:
            raise FileNotFoundError(self.path) from None
        self._last_end = end
        return data

    def close(self) -> None:
        if self._prefetch is not None:
            self._prefetch.close()
            self._prefetch = None
        super().close()

    def _initiate_upload(self) -> None:
        self._spool: IO[bytes] = tempfile.NamedTemporaryFile(prefix="tusk-upload-")  # noqa: SIM115

    def _upload_chunk(self, final: bool = False) -> bool:
        self.buffer.seek(0)
        self._spool.write(self.buffer.read())
        if final:
            self._spool.flush()
            try:
                self.fs.client.write_file(self.fs._address(self.path), Path(self._spool.name))
            finally:
                self._spool.close()
            self.fs.invalidate_cache(self.fs._parent(self.path))
        return True

    def discard(self) -> None:
        spool = getattr(self, "_spool", None)
        if spool is not None:
            spool.close()


def _position(value: int, size: int | None) -> int:
    if value >= 0:
        return value
    assert size is not None
    return max(0, size + value)
