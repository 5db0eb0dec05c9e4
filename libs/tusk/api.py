"""HTTP plumbing every service shares: error bodies, request ids, bearer-token auth."""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Iterable

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from tusk.errors import TooManyRequests, TuskError, Unavailable
from tusk.outages import translate_backend_error

log = structlog.get_logger()

# Health and metrics answer without a token so that probes and scrapers need no secret.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


_HTTP_CODES = {413: "payload_too_large", 415: "unsupported_media_type", 429: "too_many_requests"}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(TuskError)
    async def _tusk_error(_request: Request, exc: TuskError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
            problems.append(f"{where}: {error.get('msg')}" if where else str(error.get("msg")))
        return JSONResponse(
            {"error": "invalid request: " + "; ".join(problems), "code": "invalid_argument"},
            status_code=400,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return JSONResponse(
            {"error": str(exc.detail), "code": code},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    async def _backend_error(_request: Request, exc: Exception) -> JSONResponse:
        translated = translate_backend_error(exc)
        if translated is not None:
            return error_response(translated)
        log.exception("unhandled error", error=repr(exc))
        return JSONResponse({"error": "internal error", "code": "internal"}, status_code=500)

    # Registered by class (not only as the catch-all) so that they are answered without the
    # traceback a catch-all handler re-raises to the server.
    for backend_error in (SQLAlchemyError, OSError):
        app.add_exception_handler(backend_error, _backend_error)
    app.add_exception_handler(Exception, _backend_error)


def error_response(exc: TuskError) -> JSONResponse:
    """The JSON answer for a tusk error; ``Retry-After`` when waiting helps (503, 429)."""
    if exc.status_code >= 500:
        log.warning("request failed", error=exc.message, code=exc.code)
    headers = None
    if isinstance(exc, Unavailable | TooManyRequests):
        headers = {"Retry-After": str(exc.retry_after)}
    return JSONResponse(exc.to_dict(), status_code=exc.status_code, headers=headers)


class RequestContextMiddleware:
    """Binds a request id (the caller's ``X-Request-ID`` or a new one) to every log line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        request_id = headers.get(b"x-request-id", b"").decode("latin-1")[:64] or uuid.uuid4().hex

        async def send_with_id(message: dict[str, object]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),  # type: ignore[misc]
                    (b"x-request-id", request_id.encode("latin-1")),
                ]
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            await self.app(scope, receive, send_with_id)  # type: ignore[arg-type]


class BearerAuthMiddleware:
    """When tokens are configured, every request but health and metrics needs one of them."""

    def __init__(
        self, app: ASGIApp, tokens: Iterable[str], public_paths: Iterable[str] = ()
    ) -> None:
        self.app = app
        self.tokens = [t.encode() for t in tokens]
        self.public_paths = PUBLIC_PATHS | frozenset(public_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.tokens or scope["path"] in self.public_paths:
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer" or not any(
            hmac.compare_digest(token.strip(), t) for t in self.tokens
        ):
            response = JSONResponse(
                {
                    "error": "missing or invalid bearer token (set TUSK_TOKEN for the CLI)",
                    "code": "unauthorized",
                },
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def add_common_middleware(
    app: FastAPI, tokens: Iterable[str], public_paths: Iterable[str] = ()
) -> None:
    """``public_paths``: more paths than health and metrics that need no token (probes)."""
    app.add_middleware(BearerAuthMiddleware, tokens=list(tokens), public_paths=list(public_paths))
    app.add_middleware(RequestContextMiddleware)


def add_health_routes(app: FastAPI) -> None:
    """``/healthz``: the process answers; ``/readyz``: its database answers too. The app's
    ``state.context`` must have a ``db`` (:class:`tusk.db.Database`)."""

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz(request: Request) -> dict[str, str]:
        from sqlalchemy import text

        async with request.app.state.context.db.session(write=False) as session:
            await session.execute(text("SELECT 1"))
        return {"status": "ready"}
