"""An object store on any S3-compatible server through aiobotocore.

Only plain S3 calls (PutObject, GetObject with Range, HeadObject, DeleteObject,
ListObjectsV2, HeadBucket), so AWS S3, versitygw, SeaweedFS, MinIO and Ceph all work.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from tusk.errors import NotFound, Unavailable
from tusk.objectstore.base import ObjectInfo

_MISSING = {"NoSuchKey", "404", "NotFound"}


class S3ObjectStore:
    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self._client = client
        self.bucket = bucket
        self.prefix = f"{prefix}/" if prefix else ""

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        *,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        max_connections: int = 64,
    ) -> AsyncIterator[S3ObjectStore]:
        config = AioConfig(
            max_pool_connections=max_connections,
            retries={"max_attempts": 5, "mode": "standard"},
            s3={"addressing_style": "path"},
            # Chunks are addressed by their BLAKE3 hash, and TCP checks what crosses the wire:
            # a CRC32 of every byte on top (botocore's default) took a tenth of a gateway
            # read's time. Servers that demand one still get it ("when_required").
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        session = get_session()
        async with session.create_client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=config,
        ) as client:
            store = cls(client, bucket, prefix)
            await store.check_bucket()
            yield store

    async def check_bucket(self) -> None:
        try:
            await self._client.head_bucket(Bucket=self.bucket)
        except ClientError as e:
            raise Unavailable(
                f"S3 bucket {self.bucket!r} is not reachable ({_code(e)}): create it or fix "
                "TUSK_OBJECT_STORE_URL / TUSK_S3_* settings"
            ) from e
        except BotoCoreError as e:
            raise Unavailable(f"S3 endpoint not reachable: {e}") from e

    async def put(self, key: str, data: bytes) -> None:
        try:
            await self._client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data)
        except (ClientError, BotoCoreError) as e:
            raise Unavailable(f"S3 put of {key!r} failed: {e}") from e

    async def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        pieces = await self.get_pieces(key, start, end)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    async def get_pieces(self, key: str, start: int = 0, end: int | None = None) -> list[bytes]:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self.prefix + key}
        if start or end is not None:
            if end is not None and end <= start:
                return [b""]
            kwargs["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            response = await self._client.get_object(**kwargs)
            async with response["Body"] as body:
                return await _pieces(body)
        except ClientError as e:
            if _code(e) in _MISSING:
                raise NotFound(f"object {key!r} not found") from None
            raise Unavailable(f"S3 get of {key!r} failed: {e}") from e
        except (BotoCoreError, aiohttp.ClientError) as e:
            raise Unavailable(f"S3 get of {key!r} failed: {e}") from e

    async def exists(self, key: str) -> bool:
        return await self.modified_at(key) is not None

    async def modified_at(self, key: str) -> datetime | None:
        try:
            head = await self._client.head_object(Bucket=self.bucket, Key=self.prefix + key)
        except ClientError as e:
            if _code(e) in _MISSING:
                return None
            raise Unavailable(f"S3 head of {key!r} failed: {e}") from e
        except BotoCoreError as e:
            raise Unavailable(f"S3 head of {key!r} failed: {e}") from e
        modified: datetime = head["LastModified"]
        return modified

    async def list_objects(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for item in page.get("Contents", []):
                    yield ObjectInfo(
                        item["Key"][len(self.prefix) :], item["Size"], item["LastModified"]
                    )
        except (ClientError, BotoCoreError) as e:
            raise Unavailable(f"S3 listing of {prefix!r} failed: {e}") from e

    async def delete(self, key: str) -> None:
        try:
            await self._client.delete_object(Bucket=self.bucket, Key=self.prefix + key)
        except (ClientError, BotoCoreError) as e:
            raise Unavailable(f"S3 delete of {key!r} failed: {e}") from e

    async def list_keys(self, prefix: str = "") -> AsyncIterator[str]:
        paginator = self._client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            for item in page.get("Contents", []):
                yield item["Key"][len(self.prefix) :]


async def _pieces(body: Any) -> list[bytes]:
    """A response body as the pieces the connection delivered. ``body.read()`` joins them (a
    copy of every byte), and aiohttp's joining read cost three times what collecting them
    does: most of a chunk's cost on the gateway's read path."""
    content = getattr(body.raw_stream, "content", None)
    if content is None:  # not aiohttp underneath: no pieces to keep
        return [await body.read()]
    pieces = []
    size = 0
    async for piece, _ in content.iter_chunks():
        pieces.append(piece)
        size += len(piece)
    expected = body.raw_stream.headers.get("Content-Length")
    if expected is not None and int(expected) != size:
        raise Unavailable(f"S3 response cut off: {size} of {expected} bytes")
    return pieces or [b""]


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))
