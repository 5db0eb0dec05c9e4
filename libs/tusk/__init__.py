"""tusk: versioned data, data-driven pipelines and real-time model serving.

``tusk.Client`` (sync) and ``tusk.AsyncClient`` are the Python SDK; see docs/sdk.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["AsyncClient", "Client", "__version__"]

if TYPE_CHECKING:
    from tusk.sdk.aio import AsyncClient
    from tusk.sdk.sync import Client


def __getattr__(name: str) -> Any:
    # Imported on first use: workers and services import `tusk` without paying for the SDK.
    if name == "Client":
        from tusk.sdk.sync import Client

        return Client
    if name == "AsyncClient":
        from tusk.sdk.aio import AsyncClient

        return AsyncClient
    raise AttributeError(f"module 'tusk' has no attribute {name!r}")
