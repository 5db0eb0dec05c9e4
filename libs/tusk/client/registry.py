"""The inference service's model registry: which models it serves, changed at runtime.

``/v1/models`` is tusk's own API beside the Open Inference Protocol (which has no call to add
a model): ``PUT /v1/models/{name}`` serves a model from a repo branch, ``DELETE`` stops
serving it, ``GET /v1/models`` lists the configured models. The service keeps the list across
restarts. Its request and answer are wire models (:mod:`tusk.wire.inference`).
"""

from __future__ import annotations

from tusk.client.http import ServiceClient, seg
from tusk.wire.inference import ModelSource, ModelSourceRequest

__all__ = ["ModelRegistryClient", "ModelSource", "ModelSourceRequest"]


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
