"""Signing in: the console asks for an API token, checks it against the repo service, and
keeps it in an HttpOnly cookie that it sends on as the user's bearer token."""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from tusk.client.repo import RepoClient
from tusk.errors import Unauthorized
from tusk_console.api.deps import TOKEN_COOKIE, ContextDep
from tusk_console.api.render import page

router = APIRouter()


def _safe_next(target: str) -> str:
    """Only a path of this console: never send a user on to another site."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


@router.get("/login", response_class=HTMLResponse)
async def login_form(
    request: Request,
    next_: str = Query("/", alias="next", max_length=2000),
    refused: bool = False,
) -> HTMLResponse:
    error = "The services refused that token; sign in again." if refused else None
    return page(request, "login.html", next=_safe_next(next_), error=error)


@router.post("/login", response_model=None)
async def login(
    request: Request,
    ctx: ContextDep,
    token: str = Form(..., min_length=1, max_length=4096),
    next_: str = Form("/", alias="next", max_length=2000),
) -> Response:
    token = token.strip()
    try:
        async with RepoClient(ctx.settings.repo_url, token, transport=ctx.transport) as repo:
            await repo.list_repos()
    except Unauthorized:
        return page(
            request, "login.html", status_code=401, next=_safe_next(next_),
            error="That token was refused by the repo service. Check it and try again.",
        )
    response = RedirectResponse(_safe_next(next_), status_code=303)
    response.set_cookie(
        TOKEN_COOKIE, token, httponly=True, samesite="strict", secure=ctx.settings.secure_cookie,
    )
    return response


@router.post("/logout")
async def logout() -> RedirectResponse:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(TOKEN_COOKIE)
    return response
