"""What every tusk service client shares: the HTTP client, error mapping and parsing.

Errors a server answers become the matching :mod:`tusk.errors` exception carrying its message;
a server that cannot be reached becomes :class:`~tusk.errors.Unavailable`, naming the setting
that holds its address.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, ClassVar, Self, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from tusk import __version__
from tusk.errors import (
    AlreadyExists,
    Conflict,
    Forbidden,
    InvalidArgument,
    NotFound,
    PayloadTooLarge,
    RangeNotSatisfiable,
    TuskError,
    Unauthorized,
    Unavailable,
)

DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=5.0)

M = TypeVar("M", bound=BaseModel)

_ERRORS: tuple[type[TuskError], ...] = (
    InvalidArgument,
    Unauthorized,
    Forbidden,
    NotFound,
    AlreadyExists,
    Conflict,
    PayloadTooLarge,
    RangeNotSatisfiable,
    Unavailable,
)
_BY_CODE = {cls.code: cls for cls in _ERRORS}
# For answers without a tusk error body (a proxy in between, an unknown route).
_BY_STATUS: dict[int, type[TuskError]] = {
    400: InvalidArgument,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    416: RangeNotSatisfiable,
    502: Unavailable,
    503: Unavailable,
    504: Unavailable,
}


class ServiceClient:
    """Base of the service clients. Use as ``async with Client(url) as client: ...``."""

    service: ClassVar[str] = "tusk"
    url_setting: ClassVar[str] = "TUSK_URL"

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"User-Agent": f"tusk-client/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def healthy(self) -> bool:
        """Whether the service answers its liveness check (``/healthz``)."""
        try:
            return (await self._http.get("/healthz")).is_success
        except httpx.TransportError:
            return False

    async def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, url, **kwargs)
        except httpx.LocalProtocolError as e:
            # Our side broke HTTP, e.g. a body longer or shorter than the size given.
            raise InvalidArgument(f"could not send {method} {url}: {e}") from e
        except httpx.TransportError as e:
            raise self._unavailable(e) from e
        if response.is_error:
            raise error_from_response(response, self.service)
        return response

    @asynccontextmanager
    async def _stream(self, method: str, url: str, **kwargs: Any) -> AsyncIterator[httpx.Response]:
        try:
            async with self._http.stream(method, url, **kwargs) as response:
                if response.is_error:
                    await response.aread()
                    raise error_from_response(response, self.service)
                yield response
        except httpx.TransportError as e:
            raise self._unavailable(e) from e

    def _unavailable(self, error: httpx.TransportError) -> Unavailable:
        if isinstance(error, httpx.TimeoutException):
            reason = f"no answer in time ({type(error).__name__})"
        else:
            reason = str(error) or type(error).__name__
        return Unavailable(
            f"cannot reach the {self.service} service at {self.base_url}: {reason}. Is it "
            f"running (`tusk up`)? Set {self.url_setting} to use another address."
        )

    def _parse(self, model: type[M], response: httpx.Response) -> M:
        try:
            return model.model_validate_json(response.content)
        except ValidationError as e:
            raise self._unexpected(response, e) from e

    def _parse_list(self, model: type[M], response: httpx.Response) -> list[M]:
        try:
            return _list_adapter(model).validate_json(response.content)
        except ValidationError as e:
            raise self._unexpected(response, e) from e

    def _unexpected(self, response: httpx.Response, error: ValidationError) -> TuskError:
        return TuskError(
            f"unexpected answer from {response.request.url} ({error.error_count()} problem(s), "
            f"first: {error.errors()[0]['msg']}); is {self.url_setting} a tusk {self.service} "
            "service?"
        )


def error_from_response(response: httpx.Response, service: str = "tusk") -> TuskError:
    """The :mod:`tusk.errors` exception for an error answer, with the server's message."""
    try:
        body = response.json()
    except ValueError:
        body = None
    message = code = None
    details: dict[str, Any] = {}
    if isinstance(body, dict):
        message = body.get("error") if isinstance(body.get("error"), str) else None
        code = body.get("code") if isinstance(body.get("code"), str) else None
        details = body["details"] if isinstance(body.get("details"), dict) else {}
    request = response.request
    if code == "internal" or not message:
        message = (
            f"{request.method} {request.url} failed with HTTP {response.status_code} "
            f"{response.reason_phrase}" + (f": {message}" if message else "")
        )
        if response.status_code >= 500:
            message += f" (see the {service} service's log)"
    cls = _BY_CODE.get(code or "") or _BY_STATUS.get(response.status_code) or TuskError
    return cls(message, **{k: v for k, v in details.items() if k != "message"})


def seg(value: str) -> str:
    """A URL path segment: refs such as ``master^2`` hold characters a path cannot."""
    if value in ("", ".", ".."):
        # Percent-encoding leaves dots alone, and the URL would then climb up a level.
        raise InvalidArgument(f"invalid name {value!r} in a URL")
    return quote(value, safe="")


def params(**values: object) -> dict[str, object]:
    return {k: v for k, v in values.items() if v is not None}


@functools.cache
def _list_adapter(model: type[M]) -> TypeAdapter[list[M]]:
    return TypeAdapter(list[model])  # type: ignore[valid-type]
