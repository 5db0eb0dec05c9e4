"""The base of every wire model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class WireModel(BaseModel):
    """Frozen, and lenient about fields it does not know: a reader (an older client, a
    consumer of an older event) keeps working when a newer writer adds a field. Built at
    first use, since the CLI imports many of these and starts on every call."""

    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)


class ErrorBody(WireModel):
    """An error answer of the /v1 APIs: what went wrong, a stable code, and details if any."""

    error: str
    code: str
    details: dict[str, object] | None = None
