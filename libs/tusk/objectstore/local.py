"""An object store in a local directory, for the embedded mode and unit tests."""

from __future__ import annotations

import asyncio
import errno
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

from tusk.concurrency import in_thread_to_the_end
from tusk.errors import InsufficientStorage, InvalidArgument, NotFound
from tusk.objectstore.base import ObjectInfo


class LocalObjectStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise InvalidArgument(f"invalid object key {key!r}")
        return self.root / key

    async def put(self, key: str, data: bytes) -> None:
        # A put cancelled beside a failed one (a TaskGroup of chunk writes) still ends its
        # write, or undoes it, before the request answers: no partial outlives a 507.
        await in_thread_to_the_end(self._put_sync, self._path(key), data)

    async def modified_at(self, key: str) -> datetime | None:
        return await asyncio.to_thread(self._modified_sync, self._path(key))

    @staticmethod
    def _modified_sync(path: Path) -> datetime | None:
        try:
            return datetime.fromtimestamp(path.stat().st_mtime, UTC)
        except FileNotFoundError:
            return None

    async def list_objects(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        for info in await asyncio.to_thread(self._list_objects_sync, prefix):
            yield info

    def _list_objects_sync(self, prefix: str) -> list[ObjectInfo]:
        found = []
        for key in self._list_sync(prefix):
            try:
                stat = (self.root / key).stat()
            except FileNotFoundError:  # deleted since it was listed
                continue
            found.append(ObjectInfo(key, stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC)))
        return found

    @staticmethod
    def _put_sync(path: Path, data: bytes) -> None:
        # Write then rename, so a reader never sees a half-written object.
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError as e:
            # A partial left behind would keep the disk full after the failed write.
            tmp.unlink(missing_ok=True)
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise InsufficientStorage(
                    f"no space left in the object directory {path.parent} ({e.strerror}); "
                    "the write was undone"
                ) from e
            raise
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    async def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        return await asyncio.to_thread(self._get_sync, key, start, end)

    async def get_pieces(self, key: str, start: int = 0, end: int | None = None) -> list[bytes]:
        return [await self.get(key, start, end)]

    def _get_sync(self, key: str, start: int, end: int | None) -> bytes:
        try:
            with self._path(key).open("rb") as f:
                f.seek(start)
                return f.read() if end is None else f.read(max(0, end - start))
        except FileNotFoundError:
            raise NotFound(f"object {key!r} not found") from None

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._path(key).is_file)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._path(key).unlink, missing_ok=True)

    async def list_keys(self, prefix: str = "") -> AsyncIterator[str]:
        keys = await asyncio.to_thread(self._list_sync, prefix)
        for key in keys:
            yield key

    def _list_sync(self, prefix: str) -> list[str]:
        keys = []
        # Only the directory a prefix names is walked (the chunks' of a data dir, not its
        # database): listing every file of the root costs more than the listing it serves.
        head = prefix.rpartition("/")[0]
        base = self.root / head if head else self.root
        for path in base.rglob("*"):
            if path.is_file() and not path.name.startswith("."):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)
