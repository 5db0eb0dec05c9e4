"""``POST /v2/models/{model}[/versions/{version}]/infer``: the hot path.

The body is parsed by hand (:mod:`tusk_inference.domain.tensors`), not through a pydantic
model: validating thousands of numbers as Python objects would cost more than most models.
The version is resolved once, first, so a request finishes on the version it started with
even when a new one is swapped in meanwhile.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect
from starlette.routing import Route

from tusk.auth.http import principal_of
from tusk.errors import InvalidArgument, PayloadTooLarge, TuskError, UnsupportedMediaType
from tusk.openapi import body_schema
from tusk.paths import NAME_RE
from tusk_inference.api.deps import ModelReader
from tusk_inference.context import Context
from tusk_inference.domain.tensors import RequestedOutput, decode_request, encode_response
from tusk_inference.schemas import ErrorBody, InferenceRequest, InferenceResponse

router = APIRouter(tags=["Open Inference Protocol v2"])

HEADER_LENGTH = "inference-header-content-length"
REQUEST_SCHEMA, REQUEST_DEFS = body_schema(InferenceRequest)
_MODEL_PARAMETER = {
    "name": "model",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": NAME_RE.pattern},
    "description": "The model's name",
}
_VERSION_PARAMETER = {
    "name": "version",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": r"^[0-9a-f]{8,32}$"},
    "description": "A loaded version: its commit id, or a prefix of at least 8 digits",
}
_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": REQUEST_SCHEMA},
        "application/octet-stream": {
            "schema": {"type": "string", "format": "binary"},
            "description": "Binary tensor data extension: the JSON header (its length in "
            "Inference-Header-Content-Length) followed by the tensors' bytes",
        },
    },
}
_DOC: dict[str, Any] = {
    "response_model": InferenceResponse,
    # The fast routes run instead (and check the same role in _infer); this keeps the role
    # on these routes should they ever be reached.
    "dependencies": [ModelReader],
    "responses": {
        400: {"model": ErrorBody, "description": "Wrong input: name, datatype, shape or data"},
        404: {"model": ErrorBody, "description": "Unknown model, or version not loaded"},
        503: {"model": ErrorBody, "description": "No version loaded yet, or queue full"},
    },
}


@router.post(
    "/v2/models/{model}/infer",
    openapi_extra={"requestBody": _BODY, "parameters": [_MODEL_PARAMETER]},
    **_DOC,
)
async def infer(request: Request) -> Response:
    """Run the model's latest version. ``parameters`` in the answer carry the lineage: the
    model's commit, its global id, and the data commits upstream (``repo@commit``, …)."""
    return await _infer(request, None)


@router.post(
    "/v2/models/{model}/versions/{version}/infer",
    openapi_extra={"requestBody": _BODY, "parameters": [_MODEL_PARAMETER, _VERSION_PARAMETER]},
    **_DOC,
)
async def infer_version(request: Request) -> Response:
    """Run one loaded version (a commit id, or a prefix of at least 8 of its digits)."""
    return await _infer(request, request.path_params["version"])


def fast_routes() -> list[Route]:
    return [
        Route("/v2/models/{model}/infer", infer, methods=["POST"]),
        Route("/v2/models/{model}/versions/{version}/infer", infer_version, methods=["POST"]),
    ]


async def _infer(request: Request, version: str | None) -> Response:
    context: Context = request.app.state.context
    slot = context.registry.slot(request.path_params["model"])
    principal = principal_of(request)  # a plain route: no dependencies check it
    if not principal.admin:
        principal.require("repo", slot.spec.repo, "reader")
    metrics = context.metrics.model(slot.name)
    started = time.perf_counter()
    try:
        served = slot.resolve(version)
        engine = served.runner.engine
        settings = context.settings
        body, header_length = await _body(request, settings.max_request_bytes)
        decoded = decode_request(
            body,
            header_length,
            slot.name,
            engine.input_specs,
            engine.outputs,
            max_elements=settings.max_tensor_elements,
        )
        results = await served.runner.infer(decoded.inputs, decoded.rows)
        _check_output_size(results, decoded.outputs, settings.max_output_bytes)
        content, json_length = encode_response(
            served.head, decoded.id, decoded.outputs, engine.output_specs, results
        )
    except TuskError as e:
        metrics.error(e.status_code)
        raise
    metrics.latency.observe(time.perf_counter() - started)
    if json_length is None:
        return Response(content, media_type="application/json")
    return Response(
        content,
        media_type="application/octet-stream",
        headers={HEADER_LENGTH: str(json_length)},
    )


def _check_output_size(
    results: Mapping[str, Any], requested: Sequence[RequestedOutput], limit: int
) -> None:
    # Checked before encoding: as JSON text an output takes several times its raw size.
    size = sum(getattr(results[o.name], "nbytes", 0) for o in requested)
    if size > limit:
        raise PayloadTooLarge(
            f"the answer would hold {size} bytes of outputs, over the limit of {limit} "
            "(TUSK_INFERENCE_MAX_OUTPUT_BYTES); send fewer rows per request"
        )


async def _body(request: Request, limit: int) -> tuple[bytes, str | None]:
    """The body (refusing one over ``limit``, decompressed when it came gzipped) and the
    binary extension's JSON length."""
    declared: bytes | None = None
    header_length: str | None = None
    encoding = b"identity"
    for name, value in request.scope["headers"]:  # one pass, no Headers object
        if name == b"content-length":
            declared = value
        elif name == b"inference-header-content-length":
            header_length = value.decode("latin-1")
        elif name == b"content-encoding":
            encoding = value.strip().lower()
    if encoding != b"identity":
        return await _compressed_body(request, encoding, limit), header_length
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(_too_large(limit))
    # Straight from the ASGI messages: a small body is one message, read in one step.
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(_too_large(limit))
        if not message.get("more_body", False):
            if not chunks:
                return chunk, header_length
            chunks.append(chunk)
            return b"".join(chunks), header_length
        chunks.append(chunk)


async def _compressed_body(request: Request, encoding: bytes, limit: int) -> bytes:
    """A gzip or deflate body (tritonclient's ``request_compression_algorithm``), inflated
    piece by piece so that a small body cannot expand past ``limit``."""
    if encoding not in _INFLATE:
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding.decode('latin-1')!r} is not supported; send the body "
            "uncompressed, gzip or deflate"
        )
    inflater = zlib.decompressobj(_INFLATE[encoding])
    out: list[bytes] = []
    size = 0
    try:
        async for piece in request.stream():
            while piece:
                data = inflater.decompress(piece, limit + 1 - size)
                size += len(data)
                if size > limit:
                    raise PayloadTooLarge(_too_large(limit) + " once decompressed")
                out.append(data)
                piece = inflater.unconsumed_tail
        out.append(inflater.flush())
    except zlib.error as e:
        raise InvalidArgument(
            f"the body is not valid {encoding.decode('latin-1')} data: {e}"
        ) from None
    if not inflater.eof:
        raise InvalidArgument(f"the {encoding.decode('latin-1')} body is cut short")
    return b"".join(out)


# wbits for zlib: 16+ reads a gzip header, a positive value a zlib (HTTP "deflate") stream.
_INFLATE = {
    b"gzip": 16 + zlib.MAX_WBITS,
    b"x-gzip": 16 + zlib.MAX_WBITS,
    b"deflate": zlib.MAX_WBITS,
}


def _too_large(limit: int) -> str:
    return (
        f"the request is over {limit} bytes (TUSK_INFERENCE_MAX_REQUEST_BYTES); send fewer rows "
        "per request"
    )
