"""The Open Inference Protocol v2 documents, for the metadata routes and the OpenAPI schema.

Parameters are flat, with string, number or boolean values, as OIP requires (KServe's own
client validates them so), which is why lineage travels as ``repo@commit`` strings.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

Parameters = dict[str, str | int | float | bool]


class ServerLive(BaseModel):
    live: bool


class ServerReady(BaseModel):
    ready: bool


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class MetadataTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1 where any size goes")


class ModelMetadata(BaseModel):
    name: str
    versions: list[str] = Field(description="Loaded versions (commit ids), the latest first")
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]
    parameters: Parameters = Field(default_factory=dict)


class ModelReady(BaseModel):
    name: str
    ready: bool


class RepositoryEntry(BaseModel):
    """One model version, as Triton's model repository index lists them."""

    name: str
    version: str = ""
    state: str
    reason: str = ""


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


class ResponseTensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: Parameters | None = None
    data: list[Any] | None = None


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: Parameters = Field(
        description="Lineage: model_commit, global_id, data_commits (repo@commit, …) and "
        "where the model file is (model_repo, model_branch, model_path)"
    )
    outputs: list[ResponseTensor]


class ErrorBody(BaseModel):
    error: str
