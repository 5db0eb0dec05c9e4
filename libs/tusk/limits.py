"""Limits every service applies to every request before its handler sees it.

- The path and query must be valid UTF-8 once percent-decoded: otherwise two different names
  (``/%FF%FE`` and ``/%FE%FF``) would both be read as U+FFFD and collide.
- A body parsed whole (JSON, YAML, a form) may not be larger than ``max_request_bytes``: a
  declared ``Content-Length`` over it is refused at once, and a body that grows past it while
  read is cut off there, so a 300 MB body costs nothing before its 413. Streamed uploads
  (``streaming_paths``) have limits of their own.
- A body whose next piece takes longer than ``body_read_timeout`` seconds is dropped, so that
  clients declaring a huge ``Content-Length`` and sending nothing do not hold connections.
- One client (by address) runs at most ``max_client_concurrency`` requests at once; more are
  answered 429 with ``Retry-After``. Health probes are exempt.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

import structlog
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger()

_EXEMPT_FROM_CONCURRENCY = frozenset(
    {"/healthz", "/readyz", "/metrics", "/v2/health/live", "/v2/health/ready"}
)


@dataclass(frozen=True)
class RequestLimits:
    max_request_bytes: int
    body_read_timeout: float
    max_client_concurrency: int
    max_request_bytes_setting: str = "TUSK_MAX_REQUEST_BYTES"


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a body grows past its limit; answered 413."""

    def __init__(self, limit: int, setting: str) -> None:
        super().__init__(413, f"request body is over the limit of {limit} bytes ({setting})")


def _json_error(status: int, message: str, code: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message, "code": code}, status_code=status, headers=headers)


def invalid_utf8_part(scope: Scope) -> str | None:
    """``"path"`` or ``"query"`` when that part is not UTF-8 once percent-decoded."""
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
    query: bytes = scope.get("query_string", b"")
    for part, raw in (("path", raw_path), ("query", query.replace(b"+", b" "))):
        try:
            unquote_to_bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            return part
    return None


class RequestLimitsMiddleware:
    def __init__(
        self, app: ASGIApp, limits: RequestLimits, streaming_paths: Iterable[str] = ()
    ) -> None:
        self.app = app
        self.limits = limits
        self.streaming = [re.compile(p) for p in streaming_paths]
        self.in_flight: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        bad = invalid_utf8_part(scope)
        if bad is not None:
            response = _json_error(
                400,
                f"the request's {bad} is not valid UTF-8 once percent-decoded; names and paths "
                "must be UTF-8",
                "invalid_argument",
            )
            await response(scope, receive, send)
            return
        streaming = any(p.fullmatch(scope["path"]) for p in self.streaming)
        limit = None if streaming else self.limits.max_request_bytes
        declared = _content_length(scope)
        if limit is not None and declared is not None and declared > limit:
            response = _json_error(
                413,
                f"request body of {declared} bytes is over the limit of {limit} bytes "
                f"({self.limits.max_request_bytes_setting})",
                "payload_too_large",
            )
            await response(scope, receive, send)
            return
        client = scope["client"][0] if scope.get("client") else "unknown"
        counted = scope["path"] not in _EXEMPT_FROM_CONCURRENCY
        if counted and self.in_flight[client] >= self.limits.max_client_concurrency:
            response = _json_error(
                429,
                f"more than {self.limits.max_client_concurrency} requests at once from "
                f"{client} (TUSK_MAX_CLIENT_CONCURRENCY); retry when one has finished",
                "too_many_requests",
                **{"Retry-After": "1"},
            )
            await response(scope, receive, send)
            return
        if counted:
            self.in_flight[client] += 1
        try:
            await self.app(scope, self._bounded(receive, limit), send)
        finally:
            if counted:
                self.in_flight[client] -= 1
                if self.in_flight[client] <= 0:
                    del self.in_flight[client]

    def _bounded(self, receive: Receive, limit: int | None) -> Receive:
        received = 0
        timeout = self.limits.body_read_timeout
        more_body = True

        async def bounded_receive() -> Message:
            nonlocal received, more_body
            if not more_body:
                return await receive()  # the body is read: waiting for a disconnect is fine
            try:
                async with asyncio.timeout(timeout):
                    message = await receive()
            except TimeoutError:
                log.warning("request body stalled; dropping the client", after_seconds=timeout)
                # Read as a disconnect: the handler stops, nothing half-read is stored.
                more_body = False
                return {"type": "http.disconnect"}
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                more_body = bool(message.get("more_body", False))
                if limit is not None and received > limit:
                    raise BodyTooLarge(limit, self.limits.max_request_bytes_setting)
            return message

        return bounded_receive


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def add_request_limits(app: FastAPI, settings: Any, *, streaming_paths: Iterable[str] = ()) -> None:
    """Apply the limits of ``settings`` (a :class:`tusk.settings.CommonSettings`) to ``app``;
    ``streaming_paths``: regular expressions of paths whose bodies are streamed, not parsed
    whole (they enforce limits of their own)."""
    limits = RequestLimits(
        max_request_bytes=settings.max_request_bytes,
        body_read_timeout=settings.body_read_timeout,
        max_client_concurrency=settings.max_client_concurrency,
        max_request_bytes_setting=_env_name(settings, "max_request_bytes"),
    )
    app.add_middleware(RequestLimitsMiddleware, limits=limits, streaming_paths=streaming_paths)


def _env_name(settings: Any, field: str) -> str:
    alias = type(settings).model_fields[field].alias
    return alias or f"TUSK_{field.upper()}"
