"""An object store on any S3-compatible server through aiobotocore (and, for reading object
contents, urllib3 with botocore's SigV4 signer).

Only plain S3 calls (PutObject, GetObject with Range, HeadObject, DeleteObject,
ListObjectsV2, HeadBucket), so AWS S3, versitygw, SeaweedFS, MinIO and Ceph all work.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any
from urllib.parse import quote

import botocore.session
import urllib3
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import BotoCoreError, ClientError
from botocore.httpsession import get_cert_path

from tusk.errors import NotFound, Unavailable
from tusk.objectstore.base import ObjectInfo

_MISSING = {"NoSuchKey", "404", "NotFound"}
READERS = 8
"""Threads that fetch objects (each a blocking GET at a time)."""
_ERROR_CODE = re.compile(rb"<Code>([^<]*)</Code>")


class ObjectReader:
    """Blocking GetObject calls, for the reader threads: botocore's SigV4 signer and a urllib3
    connection pool, without the rest of a botocore call (parameter validation, serializing,
    a dozen event hooks, parsing the answer into a dict): that was 1.5-2 ms of Python per
    8 MiB chunk, a fifth of a gateway GetObject's CPU. Retried as botocore's standard mode
    retries: connection errors and 5xx answers, up to 5 attempts."""

    def __init__(self, endpoint_url: str, region: str, credentials: Any | None,
                 bucket: str) -> None:
        self._base = f"{endpoint_url.rstrip('/')}/{quote(bucket, safe='')}/"
        self._region = region
        self._credentials = credentials
        self._pool = urllib3.PoolManager(
            maxsize=READERS,
            retries=urllib3.Retry(total=4, backoff_factor=0.1, raise_on_status=False,
                                  status_forcelist=(500, 502, 503, 504)),
            timeout=urllib3.Timeout(connect=10.0, read=60.0),
            ca_certs=get_cert_path(True),
        )

    def get(self, key: str, byte_range: str | None) -> tuple[int, bytes]:
        """The answer's status and body (the object's bytes, or the error document)."""
        url = self._base + quote(key, safe="/~")
        request = AWSRequest("GET", url, headers={"Range": byte_range} if byte_range else {})
        if self._credentials is not None:
            frozen = self._credentials.get_frozen_credentials()
            S3SigV4Auth(frozen, "s3", self._region).add_auth(request)
        response = self._pool.request("GET", url, headers=dict(request.headers.items()),
                                      preload_content=False)
        try:
            return response.status, response.read()
        finally:
            response.release_conn()

    def close(self) -> None:
        self._pool.clear()


class S3ObjectStore:
    """Writes, listings and deletes go through aiobotocore; reads of object contents through
    a blocking :class:`ObjectReader` on a few threads (see :meth:`get_pieces`)."""

    def __init__(self, client: Any, reader: ObjectReader, readers: ThreadPoolExecutor,
                 bucket: str, prefix: str = "") -> None:
        self._client = client
        self._reader = reader
        self._readers = readers
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
        options: dict[str, Any] = {
            "endpoint_url": endpoint_url, "region_name": region,
            "aws_access_key_id": access_key_id, "aws_secret_access_key": secret_access_key,
        }
        # botocore resolves the endpoint (AWS's for the region when none is given) and the
        # credentials (the given keys, else its usual chain); the reader signs with them.
        session = botocore.session.get_session()
        resolver = session.create_client("s3", config=Config(s3={"addressing_style": "path"}),
                                         **options)
        credentials = (Credentials(access_key_id, secret_access_key)
                       if access_key_id and secret_access_key else session.get_credentials())
        reader = ObjectReader(resolver.meta.endpoint_url, region, credentials, bucket)
        resolver.close()
        readers = ThreadPoolExecutor(READERS, thread_name_prefix="s3-read")
        try:
            async with get_session().create_client("s3", config=config, **options) as client:
                store = cls(client, reader, readers, bucket, prefix)
                await store.check_bucket()
                yield store
        finally:
            readers.shutdown(wait=False, cancel_futures=True)
            reader.close()

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
        byte_range = None
        if start or end is not None:
            if end is not None and end <= start:
                return [b""]
            byte_range = f"bytes={start}-{'' if end is None else end - 1}"
        loop = asyncio.get_running_loop()
        return [await loop.run_in_executor(self._readers, self._fetch, key, byte_range)]

    def _fetch(self, key: str, byte_range: str | None) -> bytes:
        """One GET on a blocking connection, on a reader thread, read whole: the socket
        fills one buffer of the object's size in a few large receives, outside the GIL.
        Through the event loop (aiobotocore) the same bytes came as 64-256 KiB pieces, each
        a round of Python callbacks in the loop's thread: a third of a gateway GetObject's
        CPU, and time the loop did not spend sending."""
        try:
            status, body = self._reader.get(self.prefix + key, byte_range)
        except (urllib3.exceptions.HTTPError, BotoCoreError) as e:
            raise Unavailable(f"S3 get of {key!r} failed: {e}") from e
        if status in (200, 206):
            return body
        found = _ERROR_CODE.search(body)
        code = found[1].decode(errors="replace") if found else str(status)
        if status == 404 or code in _MISSING:
            raise NotFound(f"object {key!r} not found")
        raise Unavailable(f"S3 get of {key!r} failed: {status} {code}")

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


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))
