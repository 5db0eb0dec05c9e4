"""What every tusk service client shares: the HTTP client, error mapping and parsing.

Errors a server answers become the matching :mod:`tusk.errors` exception carrying its message;
a server that cannot be reached becomes :class:`~tusk.errors.Unavailable`, naming the setting
that holds its address.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import random
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar
from urllib.parse import quote, urlencode

import httpx

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
# httpx's pool sizes, with idle connections dropped after 4 s: uvicorn closes one idle for 5 s,
# and a request sent on it as it closes is lost, which only idempotent requests may retry.
POOL_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20,
                           keepalive_expiry=4.0)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The CA bundle, loaded once per process and only for https:// services: loading it
    costs tens of milliseconds of CPU, which every `tusk` command paid for plain http://
    (where there is nothing to verify: the client follows no redirects)."""
    return httpx.create_ssl_context()

if TYPE_CHECKING:
    import urllib3
    from pydantic import BaseModel, TypeAdapter, ValidationError

M = TypeVar("M", bound="BaseModel")


class LazyModule:
    """A module imported at the first lookup of one of its names. The clients parse answers
    into pydantic models, but a command that fails before any answer (or the import of a
    client) should not pay for importing pydantic and the models: most of a quick command's
    start-up. Import the real module under ``TYPE_CHECKING`` for the type checker."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        module: ModuleType = importlib.import_module(self._name)
        return getattr(module, attribute)


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


_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_RETRIED_STATUSES = frozenset({502, 503, 504})
RETRY_FIRST_DELAY = 0.25
RETRY_MAX_DELAY = 5.0
DEFAULT_RETRIES = 5  # about 10 s of waiting at most: a PostgreSQL restart, a failover
CONNECT_RETRIES = 2
# urllib3's count for the blocking client: a request that reached no server, or met a pooled
# connection the server had closed, is sent again at once.
BLOCKING_RETRIES = 2


def _replayable(content: object) -> bool:
    return content is None or isinstance(content, bytes | str)


def _retry_after(response: httpx.Response) -> float:
    value = response.headers.get("retry-after", "")
    return float(value) if value.isdigit() else 0.0


class ServiceClient:
    """Base of the service clients. Use as ``async with Client(url) as client: ...``.

    Answers that mean "unavailable, try again" are retried up to ``retries`` times where
    repeating the request is safe (see :meth:`_request`)."""

    service: ClassVar[str] = "tusk"
    url_setting: ClassVar[str] = "TUSK_URL"

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        retries: int = DEFAULT_RETRIES,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        headers = {"User-Agent": f"tusk-client/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        verify = _tls_context() if self.base_url.startswith("https:") else False
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=timeout,
            transport=transport,
            verify=verify,
            limits=POOL_LIMITS,
        )
        # A blocking connection pool for large downloads read on a thread of their own (see
        # :meth:`_stream_blocking`), made (and urllib3 imported: a CLI command that downloads
        # nothing should not pay for it) at first use; none with a transport of the caller's
        # (it is async, and so is what it may be standing in for).
        self._headers = headers
        self._blocking_options: dict[str, Any] | None = None if transport is not None else {
            "timeout": timeout, "retries": BLOCKING_RETRIES, "maxsize": 4,
            **({"ssl_context": verify} if isinstance(verify, ssl.SSLContext)
               else {"cert_reqs": "CERT_NONE"}),
        }
        self._blocking: urllib3.PoolManager | None = None
        self._blocking_lock = threading.Lock()

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
        with self._blocking_lock:
            if self._blocking is not None:
                self._blocking.clear()
                self._blocking = None

    @property
    def can_block(self) -> bool:
        """Whether :meth:`_stream_blocking` is available (not with a transport of the
        caller's)."""
        return self._blocking_options is not None

    async def healthy(self) -> bool:
        """Whether the service answers its liveness check (``/healthz``)."""
        try:
            return (await self._http.get("/healthz")).is_success
        except httpx.TransportError:
            return False

    async def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send once, or again while the service answers 'unavailable' (502/503/504, or no
        connection) and repeating is safe: an idempotent method with a body that can be sent
        again, or any request that never reached the service. ``Retry-After`` is honoured."""
        replayable = _replayable(kwargs.get("content"))
        idempotent = method.upper() in _IDEMPOTENT and replayable
        delay = RETRY_FIRST_DELAY
        for attempt in range(1, self.retries + 2):
            last = attempt > self.retries
            try:
                response = await self._http.request(method, url, **kwargs)
            except httpx.LocalProtocolError as e:
                # Our side broke HTTP, e.g. a body longer or shorter than the size given.
                raise InvalidArgument(f"could not send {method} {url}: {e}") from e
            except httpx.ConnectError as e:
                # Nothing listening is more often "not started" than "restarting": a short
                # retry covers a restart without keeping a user at the prompt for long.
                if last or not replayable or attempt > CONNECT_RETRIES:
                    raise self._unavailable(e) from e
            except httpx.TransportError as e:
                if last or not idempotent:
                    raise self._unavailable(e) from e
            else:
                if not response.is_error:
                    return response
                if last or not idempotent or response.status_code not in _RETRIED_STATUSES:
                    raise error_from_response(response, self.service)
                delay = max(delay, _retry_after(response))
            await asyncio.sleep(min(delay, RETRY_MAX_DELAY) * random.uniform(0.8, 1.2))
            delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    @asynccontextmanager
    async def _stream(self, method: str, url: str, **kwargs: Any) -> AsyncIterator[httpx.Response]:
        """:meth:`_request` for an answer read as it arrives. Failing to get the answer's
        head is retried as there (a pooled connection the server closed as it was reused
        is the common case); once the body is being read, a broken stream is the caller's."""
        request = self._http.build_request(method, url, **kwargs)
        idempotent = method.upper() in _IDEMPOTENT and _replayable(kwargs.get("content"))
        delay = RETRY_FIRST_DELAY
        for attempt in range(1, self.retries + 2):
            try:
                response = await self._http.send(request, stream=True)
                break
            except httpx.TransportError as e:
                if attempt > self.retries or not idempotent:
                    raise self._unavailable(e) from e
            await asyncio.sleep(min(delay, RETRY_MAX_DELAY) * random.uniform(0.8, 1.2))
            delay *= 2
        try:
            if response.is_error:
                await response.aread()
                raise error_from_response(response, self.service)
            yield response
        except httpx.TransportError as e:
            raise self._unavailable(e) from e
        finally:
            await response.aclose()

    @contextmanager
    def _stream_blocking(self, method: str, url: str, *, params: dict[str, str] | None = None,
                         headers: dict[str, str] | None = None,
                         ) -> Iterator[urllib3.BaseHTTPResponse]:
        """:meth:`_stream` on a blocking connection, for a thread that reads a large body
        (``response.stream(n)``: n bytes a piece, each filled by a loop of receives in C).

        The async client hands a body over in 64 KiB pieces, each a round of the event loop,
        anyio and h11 in Python: for 100 MB some 0.25 s of CPU in the reader's process, and
        1,600 turns at the GIL against whatever consumes the bytes (pandas' parser). httpx's
        blocking client reads the same 64 KiB pieces for 0.055 s; urllib3 in 1 MiB pieces
        for 0.02 s, and waits for them without the GIL. Getting the answer's head is retried
        (``BLOCKING_RETRIES``, idempotent methods only); a broken body is not: the caller
        reads on from where it stopped if it wants to."""
        import urllib3

        if self._blocking_options is None:
            raise RuntimeError("no blocking client with a transport of the caller's")
        with self._blocking_lock:
            if self._blocking is None:
                options = self._blocking_options
                self._blocking = urllib3.PoolManager(
                    **{**options, "timeout": _blocking_timeout(options["timeout"])}
                )
            pool = self._blocking
        target = self.base_url + url + (f"?{urlencode(params)}" if params else "")
        try:
            response = pool.request(method, target, headers={**self._headers, **(headers or {})},
                                    preload_content=False, redirect=False)
        except urllib3.exceptions.HTTPError as e:
            raise self._unavailable(e) from e
        try:
            if response.status >= 400:
                raise error_from_response(httpx.Response(
                    response.status, headers=list(response.headers.items()),
                    content=response.read(), request=httpx.Request(method, target),
                ), self.service)
            yield response
        except urllib3.exceptions.HTTPError as e:
            raise self._unavailable(e) from e
        finally:
            if response.length_remaining == 0:
                response.release_conn()  # read to its end: the connection serves again
            else:
                response.close()  # stopped early: what is left unread goes with it

    def _unavailable(self, error: Exception) -> Unavailable:
        if isinstance(error, httpx.TimeoutException):
            reason = f"no answer in time ({type(error).__name__})"
        else:
            reason = str(error) or type(error).__name__
        return Unavailable(
            f"cannot reach the {self.service} service at {self.base_url}: {reason}. Is it "
            f"running (`tusk up`)? Set {self.url_setting} to use another address."
        )

    def _parse(self, model: type[M], response: httpx.Response) -> M:
        from pydantic import ValidationError

        try:
            return model.model_validate_json(response.content)
        except ValidationError as e:
            raise self._unexpected(response, e) from e

    def _parse_list(self, model: type[M], response: httpx.Response) -> list[M]:
        from pydantic import ValidationError

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


def _blocking_timeout(timeout: float | httpx.Timeout) -> urllib3.Timeout:
    import urllib3

    if isinstance(timeout, httpx.Timeout):
        return urllib3.Timeout(connect=timeout.connect, read=timeout.read)
    return urllib3.Timeout(connect=timeout, read=timeout)


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
    from pydantic import TypeAdapter

    return TypeAdapter(list[model])  # type: ignore[valid-type]
