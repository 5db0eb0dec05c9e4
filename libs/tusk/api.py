"""HTTP plumbing every service shares: error bodies, request ids, authentication."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import structlog
from fastapi import Depends, FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from tusk.auth.http import DOCS_PATHS, HEALTH_PATHS, METRICS_PATHS, AuthMiddleware, public
from tusk.auth.tokens import StaticTokens
from tusk.auth.verify import CachingVerifier, Verifier
from tusk.errors import TooManyRequests, TuskError, Unavailable
from tusk.openapi import add_auth_responses
from tusk.outages import translate_backend_error
from tusk.paths import MAX_QUALIFIED_NAME_LENGTH, QUALIFIED_NAME_RE
from tusk.routing import AllowMiddleware

log = structlog.get_logger()


def qualified_name(kind: str, example: str) -> Any:
    """The path parameter of a route's ``{…:qualified}`` segment: a ``kind`` name, optionally
    qualified by its project (``p/x``, sent as ``p%2Fx``); ``example`` is a plain one."""
    return Path(
        pattern=QUALIFIED_NAME_RE.pattern,
        max_length=MAX_QUALIFIED_NAME_LENGTH,
        openapi_examples={
            "plain": {"value": example},
            "in a project": {"value": f"vision/{example}", "description": "sent as vision%2F…"},
        },
        description=f"{kind} name, optionally qualified by its project: 'p/x', sent as 'p%2Fx'",
    )


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


def add_common_middleware(
    app: FastAPI,
    tokens: Iterable[str],
    public_paths: Iterable[str] = (),
    *,
    verifier: Verifier | None = None,
    metrics_public: bool = False,
    docs_public: bool = True,
) -> None:
    """Request ids and authentication. ``verifier``: how tokens beyond ``tokens`` (the static
    administrators' of ``TUSK_API_TOKENS``) are recognised; ``public_paths``: more paths than
    the health checks that need no token (probes). Auth is off when ``tokens`` is empty."""
    verifier = verifier or CachingVerifier(StaticTokens(tokens), None, ttl=0)
    public = HEALTH_PATHS | frozenset(public_paths)
    if metrics_public:
        public |= METRICS_PATHS
    if docs_public:
        public |= DOCS_PATHS
    app.state.public_paths = public
    add_auth_responses(app, public)
    app.add_middleware(AllowMiddleware, routed=app)
    app.add_middleware(AuthMiddleware, verifier=verifier, public_paths=public)
    app.add_middleware(RequestContextMiddleware)


def add_health_routes(app: FastAPI) -> None:
    """``/healthz``: the process answers; ``/readyz``: its database answers too. The app's
    ``state.context`` must have a ``db`` (:class:`tusk.db.Database`)."""

    @app.get("/healthz", tags=["health"], dependencies=[Depends(public)])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], dependencies=[Depends(public)])
    async def readyz(request: Request) -> dict[str, str]:
        from sqlalchemy import text

        async with request.app.state.context.db.session(write=False) as session:
            await session.execute(text("SELECT 1"))
        return {"status": "ready"}
