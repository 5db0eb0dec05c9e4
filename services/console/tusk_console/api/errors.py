"""Errors as pages: a user who follows a stale link sees what is missing, not JSON."""

from __future__ import annotations

from urllib.parse import quote

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from tusk.errors import TuskError, Unauthorized
from tusk_console.api.deps import TEMPLATES, TOKEN_COOKIE, LoginRequired

log = structlog.get_logger()


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "") and not request.url.path.startswith(
        "/events"
    )


def _error_page(request: Request, status: int, message: str) -> Response:
    if not _wants_html(request):
        return JSONResponse({"error": message}, status_code=status)
    return TEMPLATES.TemplateResponse(
        request, "error.html", {"status": status, "message": message}, status_code=status
    )


def install_page_errors(app: FastAPI) -> None:
    @app.exception_handler(Unauthorized)
    async def _unauthorized(request: Request, exc: Unauthorized) -> Response:
        if not _wants_html(request):
            return JSONResponse(exc.to_dict(), status_code=401)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        reason = "" if isinstance(exc, LoginRequired) else "&refused=1"
        response = RedirectResponse(f"/login?next={quote(target)}{reason}", status_code=303)
        if not isinstance(exc, LoginRequired):
            response.delete_cookie(TOKEN_COOKIE)
        return response

    @app.exception_handler(TuskError)
    async def _tusk_error(request: Request, exc: TuskError) -> Response:
        if exc.status_code >= 500:
            log.warning("console page failed", path=request.url.path, error=exc.message)
        return _error_page(request, exc.status_code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
            problems.append(f"{where}: {error.get('msg')}" if where else str(error.get("msg")))
        return _error_page(request, 400, "invalid request: " + "; ".join(problems))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        message = "no such page" if exc.status_code == 404 else str(exc.detail)
        return _error_page(request, exc.status_code, message)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("console page crashed", path=request.url.path, error=repr(exc))
        return _error_page(request, 500, "internal error; see the console's log")
