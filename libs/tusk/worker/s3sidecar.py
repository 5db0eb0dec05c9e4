"""Pachyderm's S3 sidecar for a datum: ``pfs.s3`` inputs as read-only buckets named after the
input, and with ``s3_out`` the output as bucket ``out``, served on a loopback port whose URL the
command finds in ``S3_ENDPOINT`` (and ``AWS_ENDPOINT_URL``, which boto3 and the AWS CLI read).

The buckets are the datum's staged directories: ``<input>`` is ``/pfs/<input>`` and ``out`` is
``/pfs/out``, so what a command writes through S3 is uploaded into the output commit with the
datum's other outputs and counts as its outputs (skipped, carried forward and lineage-tracked
like any file). Keys are paths below the bucket, as in Pachyderm.

Requests must carry the datum's access key (``AWS_ACCESS_KEY_ID`` in the command's
environment); the port is on loopback and lives only while the datum's command runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from xml.etree import ElementTree as ET

from aiohttp import web

OUT_BUCKET = "out"
NS = "http://s3.amazonaws.com/doc/2006-03-01/"
MAX_KEYS = 1000
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")


@dataclass(frozen=True)
class SidecarAccess:
    """What the command's environment gets."""

    endpoint: str
    access_key: str
    secret_key: str

    def env(self) -> dict[str, str]:
        return {
            "S3_ENDPOINT": self.endpoint,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
        }


class _S3Error(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class _Sidecar:
    root: Path
    inputs: Collection[str]
    writable: bool
    access_key: str
    uploads_dir: Path
    uploads: dict[str, tuple[str, Path]] = field(default_factory=dict)

    # --- routing -------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            self._authorize(request)
            bucket, _, key = request.path.lstrip("/").partition("/")
            if not bucket:
                if request.method == "GET":
                    return self._list_buckets()
                raise _S3Error(405, "MethodNotAllowed", f"{request.method} / is not served")
            directory = self._bucket_dir(bucket)
            if not key:
                return await self._bucket_call(request, bucket, directory)
            return await self._object_call(request, bucket, directory, key)
        except _S3Error as e:
            return _error(e, head=request.method == "HEAD")

    def _authorize(self, request: web.Request) -> None:
        header = request.headers.get("Authorization", "")
        found = _CREDENTIAL.search(header) or _CREDENTIAL.search(
            "Credential=" + request.query.get("X-Amz-Credential", "")
        )
        if found is None or not secrets.compare_digest(found.group(1), self.access_key):
            raise _S3Error(
                403, "InvalidAccessKeyId", "use the datum's AWS_ACCESS_KEY_ID from the environment"
            )

    def _bucket_dir(self, bucket: str) -> Path:
        if bucket == OUT_BUCKET and self.writable:
            return self.root / OUT_BUCKET
        if bucket in self.inputs:
            return self.root / bucket
        served = sorted(self.inputs) + ([OUT_BUCKET] if self.writable else [])
        raise _S3Error(
            404, "NoSuchBucket", f"no bucket {bucket!r}; this datum's are {', '.join(served)}"
        )

    def _list_buckets(self) -> web.Response:
        names = sorted(self.inputs) + ([OUT_BUCKET] if self.writable else [])
        now = _iso(datetime.now(UTC))
        buckets = [_el("Bucket", _leaf("Name", n), _leaf("CreationDate", now)) for n in names]
        return _xml(_el("ListAllMyBucketsResult", _el("Buckets", *buckets)))

    async def _bucket_call(
        self, request: web.Request, bucket: str, directory: Path
    ) -> web.StreamResponse:
        if request.method == "HEAD":
            return web.Response(status=200)
        if request.method == "GET" and "location" in request.query:
            return _xml(_el("LocationConstraint"))
        if request.method == "GET":
            return self._list(request, bucket, directory)
        raise _S3Error(405, "MethodNotAllowed", f"{request.method} on a bucket is not served")

    async def _object_call(
        self, request: web.Request, bucket: str, directory: Path, key: str
    ) -> web.StreamResponse:
        path = _path(directory, key)
        method, query = request.method, request.query
        if method in ("GET", "HEAD"):
            return await self._get(request, path, key, head=method == "HEAD")
        if bucket != OUT_BUCKET:
            raise _S3Error(403, "AccessDenied", f"bucket {bucket!r} is an input: read-only")
        if method == "PUT" and "uploadId" in query:
            return await self._upload_part(request, query["uploadId"], query.get("partNumber"))
        if method == "PUT":
            etag = await _receive(request, path)
            return web.Response(status=200, headers={"ETag": f'"{etag}"'})
        if method == "POST" and "uploads" in query:
            return self._create_upload(bucket, key)
        if method == "POST" and "uploadId" in query:
            return await self._complete_upload(request, query["uploadId"], path, bucket, key)
        if method == "DELETE" and "uploadId" in query:
            self._drop_upload(query["uploadId"])
            return web.Response(status=204)
        if method == "DELETE":
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return web.Response(status=204)
        raise _S3Error(405, "MethodNotAllowed", f"{method} {sorted(query)} is not served")

    # --- reading -------------------------------------------------------------------------------

    async def _get(
        self, request: web.Request, path: Path, key: str, *, head: bool
    ) -> web.StreamResponse:
        stat = _stat_file(path, key)
        size = stat.st_size
        headers = {
            "Last-Modified": format_datetime(datetime.fromtimestamp(stat.st_mtime, UTC), True),
            "ETag": f'"{stat.st_size:x}-{int(stat.st_mtime_ns):x}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        start, end, status = 0, size, 200
        ranged = request.headers.get("Range")
        if ranged:
            start, end = _range(ranged, size)
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        headers["Content-Length"] = str(end - start)
        if head:
            return web.Response(status=status, headers=headers)
        response = web.StreamResponse(status=status, headers=headers)
        await response.prepare(request)
        with path.open("rb") as f:
            f.seek(start)
            left = end - start
            while left > 0:
                piece = f.read(min(left, 1 << 20))
                if not piece:
                    break
                left -= len(piece)
                await response.write(piece)
        await response.write_eof()
        return response

    def _list(self, request: web.Request, bucket: str, directory: Path) -> web.Response:
        query = request.query
        prefix = query.get("prefix", "")
        delimiter = query.get("delimiter", "")
        v2 = query.get("list-type") == "2"
        after = query.get("continuation-token" if v2 else "marker") or query.get(
            "start-after", ""
        )
        limit = min(int(query.get("max-keys", MAX_KEYS)), MAX_KEYS)
        keys = sorted(
            p.relative_to(directory).as_posix()
            for p in (directory.rglob("*") if directory.is_dir() else [])
            if p.is_file()
        )
        entries: list[ET.Element] = []
        prefixes: list[str] = []
        last = ""
        truncated = False
        for key in keys:
            if not key.startswith(prefix) or key <= after:
                continue
            if delimiter and delimiter in key[len(prefix) :]:
                common = key[: len(prefix) + key[len(prefix) :].index(delimiter) + 1]
                if common <= after or (prefixes and prefixes[-1] == common):
                    continue
                item: str | None = common
            else:
                item = None
            if len(entries) + len(prefixes) >= limit:
                truncated = True
                break
            if item is not None:
                prefixes.append(item)
                last = item
                continue
            stat = (directory / key).stat()
            entries.append(
                _el(
                    "Contents",
                    _leaf("Key", key),
                    _leaf("LastModified", _iso(datetime.fromtimestamp(stat.st_mtime, UTC))),
                    _leaf("ETag", f'"{stat.st_size:x}-{int(stat.st_mtime_ns):x}"'),
                    _leaf("Size", stat.st_size),
                    _leaf("StorageClass", "STANDARD"),
                )
            )
            last = key
        result = _el(
            "ListBucketResult",
            _leaf("Name", bucket),
            _leaf("Prefix", prefix),
            _leaf("MaxKeys", limit),
            _leaf("IsTruncated", "true" if truncated else "false"),
            *([_leaf("Delimiter", delimiter)] if delimiter else []),
            *entries,
            *(_el("CommonPrefixes", _leaf("Prefix", p)) for p in prefixes),
        )
        result.append(_leaf("KeyCount", len(entries) + len(prefixes)))
        if truncated:
            result.append(_leaf("NextContinuationToken" if v2 else "NextMarker", last))
        return _xml(result)

    # --- multipart uploads -----------------------------------------------------------------

    def _create_upload(self, bucket: str, key: str) -> web.Response:
        upload = secrets.token_hex(16)
        parts = self.uploads_dir / upload
        parts.mkdir(parents=True)
        self.uploads[upload] = (key, parts)
        return _xml(
            _el(
                "InitiateMultipartUploadResult",
                _leaf("Bucket", bucket),
                _leaf("Key", key),
                _leaf("UploadId", upload),
            )
        )

    async def _upload_part(
        self, request: web.Request, upload: str, number: str | None
    ) -> web.Response:
        if upload not in self.uploads:
            raise _S3Error(404, "NoSuchUpload", f"no upload {upload!r}")
        if number is None or not number.isdigit() or not 1 <= int(number) <= 10000:
            raise _S3Error(400, "InvalidArgument", "partNumber must be 1 to 10000")
        etag = await _receive(request, self.uploads[upload][1] / f"{int(number):05d}")
        return web.Response(status=200, headers={"ETag": f'"{etag}"'})

    async def _complete_upload(
        self, request: web.Request, upload: str, path: Path, bucket: str, key: str
    ) -> web.Response:
        if upload not in self.uploads:
            raise _S3Error(404, "NoSuchUpload", f"no upload {upload!r}")
        _, parts_dir = self.uploads[upload]
        try:
            document = ET.fromstring(await request.read())  # noqa: S314 - from the datum's own command
        except ET.ParseError:
            raise _S3Error(400, "MalformedXML", "CompleteMultipartUpload is not XML") from None
        numbers = [
            int(n.text or "0") for n in document.iter() if n.tag.endswith("PartNumber")
        ]
        missing = [n for n in numbers if not (parts_dir / f"{n:05d}").is_file()]
        if not numbers or missing:
            raise _S3Error(400, "InvalidPart", f"parts not uploaded: {missing or 'none given'}")
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{upload}.part")
        with partial.open("wb") as out:
            for number in numbers:
                with (parts_dir / f"{number:05d}").open("rb") as part:
                    shutil.copyfileobj(part, out, 1 << 20)
        partial.replace(path)
        self._drop_upload(upload)
        return _xml(
            _el(
                "CompleteMultipartUploadResult",
                _leaf("Bucket", bucket),
                _leaf("Key", key),
                _leaf("ETag", f'"{upload}-{len(numbers)}"'),
            )
        )

    def _drop_upload(self, upload: str) -> None:
        found = self.uploads.pop(upload, None)
        if found is not None:
            shutil.rmtree(found[1], ignore_errors=True)


@contextlib.asynccontextmanager
async def serve_sidecar(
    root: Path, inputs: Collection[str], *, writable: bool
) -> AsyncIterator[SidecarAccess]:
    """Serve the datum staged at ``root`` until the block ends."""
    with tempfile.TemporaryDirectory(prefix="tusk-s3-uploads-") as uploads:
        sidecar = _Sidecar(
            root=root,
            inputs=frozenset(inputs),
            writable=writable,
            access_key="TUSK" + secrets.token_hex(8).upper(),
            uploads_dir=Path(uploads),
        )
        app = web.Application(client_max_size=0)
        app.router.add_route("*", "/{tail:.*}", sidecar.handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))  # a free port, chosen by the system
            port = sock.getsockname()[1]
            await web.SockSite(runner, sock).start()
            yield SidecarAccess(
                endpoint=f"http://127.0.0.1:{port}",
                access_key=sidecar.access_key,
                secret_key=secrets.token_hex(16),
            )
        finally:
            await runner.cleanup()


# --- helpers ---------------------------------------------------------------------------------


def _stat_file(path: Path, key: str) -> os.stat_result:
    if not path.is_file():
        raise _S3Error(404, "NoSuchKey", f"no object {key!r}")
    return path.stat()


def _path(directory: Path, key: str) -> Path:
    parts = [p for p in key.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise _S3Error(400, "InvalidArgument", f"key {key!r} is not a path below the bucket")
    return directory.joinpath(*parts)


async def _receive(request: web.Request, path: Path) -> str:
    """Write the request's body (aws-chunked decoded) to ``path``, atomically; its MD5."""
    chunked = "aws-chunked" in request.headers.get("Content-Encoding", "") or request.headers.get(
        "x-amz-content-sha256", ""
    ).startswith("STREAMING-")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with partial.open("wb") as out:
            pieces = _aws_chunks(request) if chunked else request.content.iter_chunked(1 << 20)
            async for piece in pieces:
                digest.update(piece)
                out.write(piece)
        os.replace(partial, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return digest.hexdigest()


async def _aws_chunks(request: web.Request) -> AsyncIterator[bytes]:
    """``size[;chunk-signature=…]\\r\\n data \\r\\n … 0\\r\\n trailers``: the data."""
    content = request.content
    while True:
        line = (await content.readline()).strip()
        if not line:
            raise _S3Error(400, "IncompleteBody", "aws-chunked body cut off")
        try:
            size = int(line.split(b";", 1)[0], 16)
        except ValueError:
            raise _S3Error(400, "IncompleteBody", "malformed aws-chunked body") from None
        if size == 0:
            return
        yield await content.readexactly(size)
        await content.readexactly(2)


def _range(header: str, size: int) -> tuple[int, int]:
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        raise _S3Error(416, "InvalidRange", f"range {header!r} is not served")
    first, last = match.groups()
    if first == "":
        start, end = max(0, size - int(last)), size
    else:
        start, end = int(first), min(size, int(last) + 1 if last else size)
    if start >= size and size:
        raise _S3Error(416, "InvalidRange", f"range {header!r} starts past the end ({size})")
    return start, end


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _el(tag: str, *children: ET.Element) -> ET.Element:
    node = ET.Element(tag)
    node.extend(children)
    return node


def _leaf(tag: str, value: object) -> ET.Element:
    node = ET.Element(tag)
    node.text = str(value)
    return node


def _xml(root: ET.Element, status: int = 200) -> web.Response:
    root.set("xmlns", NS)
    body = b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root)
    return web.Response(body=body, status=status, content_type="application/xml")


def _error(error: _S3Error, *, head: bool) -> web.Response:
    if head:
        return web.Response(status=error.status)
    root = _el("Error", _leaf("Code", error.code), _leaf("Message", error.message))
    body = b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root)
    return web.Response(body=body, status=error.status, content_type="application/xml")
