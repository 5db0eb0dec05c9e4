"""The S3 gateway's ASGI app: S3's REST API (path-style) in front of the repos.

Served by the repo service on a port of its own (``TUSK_S3_GATEWAY_PORT``, default 8085;
``tusk up`` starts it): S3 clients put the bucket first in the path, and a repo may be called
anything, so the gateway cannot share the repo API's paths. Bucket = repo, key = ``REF/PATH``
(``master/data/a.csv``, or ``<commit id>/data/a.csv``: an immutable snapshot).
"""

from __future__ import annotations

import itertools
import mimetypes
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from email.utils import format_datetime
from urllib.parse import parse_qsl, quote, unquote
from xml.etree import ElementTree as ET

import structlog
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from tusk.errors import InvalidArgument, TuskError
from tusk.logging import configure_logging
from tusk_repo.api.files import _parse_range
from tusk_repo.config import RepoSettings
from tusk_repo.context import Context, build_context
from tusk_repo.s3.gateway import Gateway, Listing, ObjectInfo
from tusk_repo.s3.sigv4 import S3Credentials, SignedRequest, TokenCredentials, checked_body, verify
from tusk_repo.s3.xml import S3Error, element, from_tusk, iso, leaf, xml_response

log = structlog.get_logger()

MAX_KEYS = 1000
METHODS = frozenset({"GET", "HEAD", "PUT", "POST", "DELETE"})
_PROCESS_ID = uuid.uuid4().hex[:8].upper()
_requests = itertools.count()


class Call:
    """One request as the handlers see it: its bucket, key, query and verified signature."""

    def __init__(self, request: Request, bucket: str, key: str, query: str,
                 headers: dict[str, str], signed: SignedRequest | None) -> None:
        self.request = request
        self.bucket = bucket
        self.key = key
        self.query = dict(parse_qsl(query, keep_blank_values=True)) if query else {}
        self.headers = headers
        self.signed = signed

    @property
    def resource(self) -> str:
        return f"/{self.bucket}/{self.key}" if self.key else f"/{self.bucket}"

    def body(self) -> AsyncIterator[bytes]:
        return checked_body(_stream(self.request), self.signed, self.headers)


async def _stream(request: Request) -> AsyncIterator[bytes]:
    try:
        async for piece in request.stream():
            if piece:
                yield piece
    except ClientDisconnect:
        raise InvalidArgument("IncompleteBody: upload cut off; nothing was written") from None


def create_gateway_app(
    context: Context | None = None,
    *,
    credentials: S3Credentials | None = None,
    settings: RepoSettings | None = None,
) -> GatewayApp:
    """The gateway over a repo service's context (``tusk up`` shares the repo service's);
    without one, a process of its own (``uvicorn --factory tusk_repo.s3.app:create_gateway_app
    --port 8085``) on the repo service's settings and database. ``credentials``: how SigV4
    access keys map onto tusk's tokens (default: the secret access key is a TUSK_API_TOKENS
    token)."""

    def install(app: Starlette, ctx: Context) -> None:
        app.state.gateway = Gateway(ctx)
        app.state.credentials = credentials or TokenCredentials(ctx.settings.api_tokens)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if context is not None:
            yield
            return
        own = settings or RepoSettings()
        configure_logging(own.log_level, json=own.log_json)
        async with build_context(own) as built:
            install(app, built)
            log.info("S3 gateway ready", objects=own.resolved_object_store_url)
            yield

    app = Starlette(lifespan=lifespan)
    if context is not None:
        install(app, context)
    return GatewayApp(app)


class GatewayApp:
    """Every request straight to the one endpoint; Starlette serves the lifespan and holds
    the state. Its router and middleware (route matching, two exception wrappers) were a
    fifth of a small PutObject's CPU, for one route that answers its own errors."""

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.state = app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope["app"] = self.app
        request = Request(scope, receive, send)
        if request.method not in METHODS:
            response = S3Error(405, "MethodNotAllowed",
                               f"{request.method} is not an S3 method").response("")
        else:
            try:
                response = await _endpoint(request)
            except Exception:
                log.exception("S3 gateway request failed", method=request.method,
                              path=scope["path"])
                response = S3Error(500, "InternalError", "the gateway failed; see its log; "
                                   "retry").response("")
        await response(scope, receive, send)


async def _endpoint(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    credentials: S3Credentials = request.app.state.credentials
    request_id = f"{_PROCESS_ID}{next(_requests):08X}"
    # From the ASGI scope, not request.url: building a URL object per request was a tenth
    # of a small PutObject's CPU.
    scope = request.scope
    path: str = scope["path"]
    query: str = scope["query_string"].decode("latin-1")
    bucket, _, key = path.lstrip("/").partition("/")
    bucket, key = unquote(bucket), unquote(key)
    head = request.method == "HEAD"
    try:
        # ASGI header names are lower-case bytes already.
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        raw_path = scope.get("raw_path") or path.encode()
        signed = verify(
            credentials, method=request.method,
            raw_path=raw_path.decode("latin-1").partition("?")[0],
            query_string=query, headers=headers,
        )
        response = await _dispatch(gateway, Call(request, bucket, key, query, headers, signed))
    except (S3Error, TuskError) as e:
        error = e if isinstance(e, S3Error) else from_tusk(e, path)
        response = error.response(request_id, head=head)
        if request.method in ("PUT", "POST"):
            # The body may be unread: the connection cannot carry another request.
            response.headers["Connection"] = "close"
    response.headers["x-amz-request-id"] = request_id
    return response


async def _dispatch(gateway: Gateway, call: Call) -> Response:
    method = call.request.method
    if not call.bucket:
        if method != "GET":
            raise S3Error(405, "MethodNotAllowed", "only ListBuckets is served at /")
        return await _list_buckets(gateway)
    if not call.key:
        return await _bucket(gateway, call, method)
    return await _object(gateway, call, method)


async def _list_buckets(gateway: Gateway) -> Response:
    buckets = element("Buckets", *(
        element("Bucket", leaf("Name", name), leaf("CreationDate", iso(created)))
        for name, created in await gateway.list_buckets()
    ))
    owner = element("Owner", leaf("ID", "tusk"), leaf("DisplayName", "tusk"))
    return xml_response(element("ListAllMyBucketsResult", owner, buckets))


async def _bucket(gateway: Gateway, call: Call, method: str) -> Response:
    q = call.query
    if method == "HEAD":
        await gateway.head_bucket(call.bucket)
        return Response(headers={"x-amz-bucket-region": "us-east-1"})
    if method == "PUT":
        await gateway.create_bucket(call.bucket)
        return Response(headers={"Location": f"/{call.bucket}"})
    if method == "POST" and "delete" in q:
        return await _delete_objects(gateway, call)
    if method == "GET":
        await gateway.head_bucket(call.bucket)
        if "location" in q:
            return xml_response(element("LocationConstraint"))
        if "versioning" in q:
            return xml_response(element("VersioningConfiguration"))
        if "uploads" in q:
            return _list_uploads(gateway, call)
        if set(q) & {"acl", "policy", "cors", "lifecycle", "tagging", "website", "logging"}:
            raise S3Error(501, "NotImplemented", f"{sorted(q)[0]} is not served by tusk's "
                          "gateway", call.resource)
        return _list_objects(await _listing(gateway, call), call)
    raise S3Error(501, "NotImplemented",
                  f"{method} on a bucket is not served (delete repos with `tusk repo delete`)",
                  call.resource)


async def _listing(gateway: Gateway, call: Call) -> Listing:
    q = call.query
    try:
        max_keys = min(int(q.get("max-keys", MAX_KEYS)), MAX_KEYS)
    except ValueError:
        raise S3Error(400, "InvalidArgument", "max-keys must be a number") from None
    if max_keys < 0:
        raise S3Error(400, "InvalidArgument", "max-keys must not be negative")
    if q.get("list-type") == "2":
        after = q.get("continuation-token") or q.get("start-after", "")
    else:
        after = q.get("marker", "")
    return await gateway.list_objects(
        call.bucket, q.get("prefix", ""), q.get("delimiter", ""), after, max_keys
    )


def _list_objects(listing: Listing, call: Call) -> Response:
    q = call.query
    encode = q.get("encoding-type") == "url"

    def name(text: str) -> str:
        return quote(text, safe="/~") if encode else text

    v2 = q.get("list-type") == "2"
    items = [
        leaf("Name", call.bucket), leaf("Prefix", name(q.get("prefix", ""))),
        leaf("MaxKeys", q.get("max-keys", MAX_KEYS)), leaf("IsTruncated", listing.truncated),
    ]
    if q.get("delimiter"):
        items.append(leaf("Delimiter", name(q["delimiter"])))
    if encode:
        items.append(leaf("EncodingType", "url"))
    if v2:
        items.append(leaf("KeyCount", len(listing.objects) + len(listing.prefixes)))
        if q.get("continuation-token"):
            items.append(leaf("ContinuationToken", q["continuation-token"]))
        if q.get("start-after"):
            items.append(leaf("StartAfter", name(q["start-after"])))
        if listing.next_marker:
            items.append(leaf("NextContinuationToken", listing.next_marker))
    else:
        items.append(leaf("Marker", q.get("marker", "")))
        if listing.next_marker:
            items.append(leaf("NextMarker", name(listing.next_marker)))
    items += [_contents(o, name) for o in listing.objects]
    items += [element("CommonPrefixes", leaf("Prefix", name(p))) for p in listing.prefixes]
    return xml_response(element("ListBucketResult", *items))


def _contents(info: ObjectInfo, name: Callable[[str], str]) -> ET.Element:
    return element(
        "Contents", leaf("Key", name(info.key)), leaf("LastModified", iso(info.modified)),
        leaf("ETag", f'"{info.hash}"'), leaf("Size", info.size),
        leaf("StorageClass", "STANDARD"),
    )


def _list_uploads(gateway: Gateway, call: Call) -> Response:
    uploads = [
        element("Upload", leaf("Key", u.key), leaf("UploadId", upload_id))
        for upload_id, u in gateway.uploads.items() if u.bucket == call.bucket
    ]
    return xml_response(element("ListMultipartUploadsResult", leaf("Bucket", call.bucket),
                                leaf("IsTruncated", False), *uploads))


async def _delete_objects(gateway: Gateway, call: Call) -> Response:
    body = b"".join([piece async for piece in call.body()])
    try:
        root = ET.fromstring(body)  # noqa: S314 (a small document; entities are not expanded)
    except ET.ParseError as e:
        raise S3Error(400, "MalformedXML", f"the Delete document is not XML: {e}") from None
    keys = [node.text or "" for node in root.iter() if _tag(node) == "Key"]
    quiet = any(_tag(n) == "Quiet" and (n.text or "").lower() == "true" for n in root.iter())
    results = []
    for key in keys:
        try:
            await gateway.delete_object(call.bucket, key)
            if not quiet:
                results.append(element("Deleted", leaf("Key", key)))
        except (S3Error, TuskError) as e:
            error = e if isinstance(e, S3Error) else from_tusk(e, f"/{call.bucket}/{key}")
            results.append(element("Error", leaf("Key", key), leaf("Code", error.code),
                                   leaf("Message", error.message)))
    return xml_response(element("DeleteResult", *results))


def _tag(node: ET.Element) -> str:
    return node.tag.rpartition("}")[2]


async def _object(gateway: Gateway, call: Call, method: str) -> Response:
    q = call.query
    if method in ("GET", "HEAD"):
        return await _get_object(gateway, call, head=method == "HEAD")
    if method == "PUT":
        if "uploadId" in q:
            upload = gateway.upload(call.bucket, call.key, q["uploadId"])
            try:
                number = int(q.get("partNumber", ""))
            except ValueError:
                raise S3Error(400, "InvalidArgument", "partNumber must be a number") from None
            part = await gateway.upload_part(upload, number, call.body())
            return Response(headers={"ETag": f'"{part.hash}"'})
        source = call.headers.get("x-amz-copy-source")
        if source:
            return await _copy_object(gateway, call, source)
        digest, commit = await gateway.put_object(call.bucket, call.key, call.body(),
                                                  length=_announced_length(call))
        return Response(headers={"ETag": f'"{digest}"', "x-tusk-commit": commit})
    if method == "POST":
        if "uploads" in q:
            upload_id = await gateway.create_upload(call.bucket, call.key)
            return xml_response(element(
                "InitiateMultipartUploadResult", leaf("Bucket", call.bucket),
                leaf("Key", call.key), leaf("UploadId", upload_id),
            ))
        if "uploadId" in q:
            return await _complete_upload(gateway, call, q["uploadId"])
    if method == "DELETE":
        if "uploadId" in q:
            gateway.upload(call.bucket, call.key, q["uploadId"])
            gateway.abort_upload(q["uploadId"])
            return Response(status_code=204)
        await gateway.delete_object(call.bucket, call.key)
        return Response(status_code=204)
    raise S3Error(501, "NotImplemented", f"{method} {sorted(q)} is not served", call.resource)


def _announced_length(call: Call) -> int | None:
    """The object's size as the request announces it (aws-chunked bodies announce it apart)."""
    headers = call.headers
    text = headers.get("x-amz-decoded-content-length") or headers.get("content-length")
    return int(text) if text and text.isdigit() else None


async def _get_object(gateway: Gateway, call: Call, *, head: bool) -> Response:
    info, stored = await gateway.head_object(call.bucket, call.key)
    headers = {
        "ETag": f'"{info.hash}"',
        "Last-Modified": format_datetime(info.modified, usegmt=True),
        "Accept-Ranges": "bytes",
        "Content-Type": mimetypes.guess_type(call.key)[0] or "application/octet-stream",
        "x-tusk-commit": info.commit,
    }
    range_header = call.headers.get("range")
    start, end = _parse_range(range_header, info.size) if range_header else (0, info.size)
    headers["Content-Length"] = str(end - start)
    status = 200
    if range_header:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{info.size}"
    if head or end == start:
        return Response(status_code=status, headers=headers)
    return StreamingResponse(gateway.read(stored, start, end), status_code=status,
                             headers=headers)


async def _copy_object(gateway: Gateway, call: Call, source: str) -> Response:
    source = unquote(source.partition("?")[0]).lstrip("/")
    source_bucket, _, source_key = source.partition("/")
    if not source_key:
        raise S3Error(400, "InvalidArgument", "x-amz-copy-source must be BUCKET/KEY")
    info, commit = await gateway.copy_object(call.bucket, call.key, source_bucket, source_key)
    result = element("CopyObjectResult", leaf("LastModified", iso(info.modified)),
                     leaf("ETag", f'"{info.hash}"'))
    return xml_response(result, headers={"x-tusk-commit": commit})


async def _complete_upload(gateway: Gateway, call: Call, upload_id: str) -> Response:
    upload = gateway.upload(call.bucket, call.key, upload_id)
    body = b"".join([piece async for piece in call.body()])
    try:
        root = ET.fromstring(body)  # noqa: S314 (a small document; entities are not expanded)
        numbers = [int(n.text or "") for n in root.iter() if _tag(n) == "PartNumber"]
    except (ET.ParseError, ValueError) as e:
        raise S3Error(400, "MalformedXML", f"CompleteMultipartUpload: {e}") from None
    stored, commit = await gateway.complete_upload(upload_id, upload, numbers)
    result = element(
        "CompleteMultipartUploadResult", leaf("Location", call.resource),
        leaf("Bucket", call.bucket), leaf("Key", call.key), leaf("ETag", f'"{stored.hash}"'),
    )
    return xml_response(result, headers={"x-tusk-commit": commit})

