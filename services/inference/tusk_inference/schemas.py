"""The Open Inference Protocol v2 documents, for the metadata routes and the OpenAPI schema;
those clients read too are the wire models of :mod:`tusk.wire.inference`.

Parameters are flat, with string, number or boolean values, as OIP requires (KServe's own
client validates them so), which is why lineage travels as ``repo@commit`` strings.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from tusk.wire.inference import (
    InferenceError,
    InferenceResponse,
    MetadataTensor,
    ModelMetadata,
    Parameters,
    RepositoryEntry,
    ResponseTensor,
)

# The protocol's error answer, which has no `code` (unlike the /v1 APIs' ErrorBody).
ErrorBody = InferenceError

__all__ = [
    "ErrorBody",
    "InferenceError",
    "InferenceRequest",
    "InferenceResponse",
    "MetadataTensor",
    "ModelMetadata",
    "ModelReady",
    "Parameters",
    "RepositoryEntry",
    "RequestTensor",
    "RequestedOutput",
    "ResponseTensor",
    "ServerLive",
    "ServerMetadata",
    "ServerReady",
]


class ServerLive(BaseModel):
    live: bool


class ServerReady(BaseModel):
    ready: bool


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class ModelReady(BaseModel):
    name: str
    ready: bool


class RequestTensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str = Field(description="BOOL, UINT8…64, INT8…64, FP16, FP32, FP64 or BYTES")
    parameters: Parameters | None = None
    data: list[Any] | None = Field(
        default=None, description="Row-major values, flat or nested; absent with binary data"
    )


class RequestedOutput(BaseModel):
    name: str
    parameters: Parameters | None = None


class InferenceRequest(BaseModel):
    id: str | None = None
    parameters: Parameters | None = None
    inputs: list[RequestTensor]
    outputs: list[RequestedOutput] | None = None
