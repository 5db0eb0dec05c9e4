"""The inference service's model registry: which models it serves, changed at runtime.

``/v1/models`` is tusk's own API beside the Open Inference Protocol (which has no call to add
a model): ``PUT /v1/models/{name}`` serves a model from a repo branch, ``DELETE`` stops
serving it, ``GET /v1/models`` lists the configured models. The service keeps the list across
restarts. These are the wire models both the service and its clients use.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tusk.client.http import ServiceClient, seg


class ModelSourceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str = Field(
        description="REPO@BRANCH:/path/model.onnx; the branch's new commits are served as "
        "they arrive",
        examples=["train@master:/model.onnx"],
    )
    batching: Literal["auto", "always", "never"] | None = Field(
        default=None, description="Micro-batching; default: the service's setting"
    )


class ModelSource(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str
    source: str
    batching: Literal["auto", "always", "never"] | None = None
    origin: Literal["settings", "runtime"] = Field(
        description="settings: from TUSK_MODELS / TUSK_MODELS_FILE (removed only there); "
        "runtime: added through this API, kept across restarts"
    )


class ModelRegistryClient(ServiceClient):
    service = "inference"
    url_setting = "TUSK_INFERENCE_URL"

    async def list(self) -> list[ModelSource]:
        return self._parse_list(ModelSource, await self._request("GET", "/v1/models"))

    async def add(
        self, name: str, source: str, *, batching: str | None = None, replace: bool = False
    ) -> ModelSource:
        """Serve a model; an existing one of that name is replaced only with ``replace``
        (adding the same source again is a no-op, so retries are safe)."""
        response = await self._request(
            "PUT",
            f"/v1/models/{seg(name)}",
            json={"source": source, "batching": batching},
            params={"replace": str(replace).lower()},
        )
        return self._parse(ModelSource, response)

    async def remove(self, name: str) -> None:
        await self._request("DELETE", f"/v1/models/{seg(name)}")
