"""A client for the inference service's Open Inference Protocol v2 API (JSON tensors).

Any OIP v2 client works against the service (tritonclient, KServe's); this one needs no
numpy and speaks tusk's errors, for the CLI and scripts.
"""

from __future__ import annotations

from typing import Any

from tusk.client.http import ServiceClient, seg
from tusk.wire.inference import (
    InferenceResponse,
    MetadataTensor,
    ModelMetadata,
    Parameters,
    RepositoryEntry,
    ResponseTensor,
)

# The names these models had here before they moved to :mod:`tusk.wire`.
TensorMetadata = MetadataTensor
OutputTensor = ResponseTensor
InferResponse = InferenceResponse

__all__ = [
    "InferResponse",
    "InferenceClient",
    "InferenceResponse",
    "MetadataTensor",
    "ModelMetadata",
    "OutputTensor",
    "Parameters",
    "RepositoryEntry",
    "ResponseTensor",
    "TensorMetadata",
]


class InferenceClient(ServiceClient):
    service = "inference"
    url_setting = "TUSK_INFERENCE_URL"

    async def ready(self) -> bool:
        response = await self._http.get("/v2/health/ready")
        return response.status_code == 200

    async def models(self) -> list[RepositoryEntry]:
        """Every loaded version of every model, and the models with none."""
        response = await self._request("POST", "/v2/repository/index", json={})
        return self._parse_list(RepositoryEntry, response)

    async def model(self, name: str, version: str | None = None) -> ModelMetadata:
        response = await self._request("GET", _model_path(name, version))
        return self._parse(ModelMetadata, response)

    async def infer(
        self, name: str, request: dict[str, Any], version: str | None = None
    ) -> InferResponse:
        """Send an OIP inference request (``{"inputs": [...], ...}``) as JSON."""
        response = await self._request("POST", _model_path(name, version) + "/infer", json=request)
        return self._parse(InferResponse, response)


def _model_path(name: str, version: str | None) -> str:
    path = f"/v2/models/{seg(name)}"
    return path + (f"/versions/{seg(version)}" if version else "")
