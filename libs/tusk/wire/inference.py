"""The Open Inference Protocol v2 documents the inference service answers and its clients read.

Parameters are flat, with string, number or boolean values, as OIP requires (KServe's own
client validates them so), which is why lineage travels as ``repo@commit`` strings.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tusk.wire.base import WireModel

Parameters = dict[str, str | int | float | bool]


class MetadataTensor(WireModel):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1 where any size goes")


class ModelMetadata(WireModel):
    name: str
    versions: list[str] = Field(description="Loaded versions (commit ids), the latest first")
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]
    parameters: Parameters = Field(default_factory=dict)


class RepositoryEntry(WireModel):
    """One model version, as Triton's model repository index lists them."""

    name: str
    version: str = ""
    state: str
    reason: str = ""


class ResponseTensor(WireModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: Parameters | None = None
    data: list[Any] | None = None


class InferenceResponse(WireModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: Parameters = Field(
        description="Lineage: model_commit, global_id, data_commits (repo@commit, …) and "
        "where the model file is (model_repo, model_branch, model_path)"
    )
    outputs: list[ResponseTensor]


class InferenceError(WireModel):
    """The protocol's error answer."""

    error: str


class ModelSourceRequest(BaseModel):
    """What `PUT /v1/models/{name}` takes."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(
        description="REPO@BRANCH:/path/model.onnx; the branch's new commits are served as "
        "they arrive",
        examples=["train@master:/model.onnx"],
    )
    batching: Literal["auto", "always", "never"] | None = Field(
        default=None, description="Micro-batching; default: the service's setting"
    )


class ModelSource(WireModel):
    """A model the service serves, and where its versions come from (`/v1/models`)."""

    name: str
    source: str
    batching: Literal["auto", "always", "never"] | None = None
    origin: Literal["settings", "runtime"] = Field(
        description="settings: from TUSK_MODELS / TUSK_MODELS_FILE (removed only there); "
        "runtime: added through this API, kept across restarts"
    )
