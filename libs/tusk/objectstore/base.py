"""The ``ObjectStore`` protocol and the factory that picks an implementation from a URL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse

from tusk.settings import CommonSettings


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """A stored object as a listing describes it; ``modified`` is when it was last written."""

    key: str
    size: int
    modified: datetime


class ObjectStore(Protocol):
    """Immutable blobs under string keys. Values are small enough (one chunk) to hold in memory."""

    async def put(self, key: str, data: bytes) -> None: ...

    async def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        """Bytes ``[start, end)`` of the object; raises ``NotFound`` when it does not exist."""
        ...

    async def get_pieces(self, key: str, start: int = 0, end: int | None = None) -> list[bytes]:
        """The same bytes as :meth:`get`, in the pieces they arrived in: joining them would
        copy every byte once more, and a reader that sends them on does not need to."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> None:
        """Remove the object; removing a missing object is not an error."""
        ...

    def list_keys(self, prefix: str = "") -> AsyncIterator[str]: ...

    def list_objects(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        """Every object under ``prefix`` with its size and last write time."""
        ...

    async def modified_at(self, key: str) -> datetime | None:
        """When the object was last written, or None when it does not exist."""
        ...


@asynccontextmanager
async def open_object_store(settings: CommonSettings) -> AsyncIterator[ObjectStore]:
    url = settings.resolved_object_store_url
    parsed = urlparse(url)
    if parsed.scheme == "file":
        from tusk.objectstore.local import LocalObjectStore

        yield LocalObjectStore(Path(unquote(parsed.path)))
        return
    from tusk.objectstore.s3 import S3ObjectStore

    async with S3ObjectStore.connect(
        bucket=parsed.netloc,
        prefix=parsed.path.strip("/"),
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=settings.s3_secret_access_key,
    ) as store:
        yield store
