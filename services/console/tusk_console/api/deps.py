from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.templating import Jinja2Templates

from tusk.errors import Unauthorized
from tusk_console.backends import Backends
from tusk_console.context import Context

TOKEN_COOKIE = "tusk_token"  # noqa: S105 (the cookie's name, not a secret)
TEMPLATES = Jinja2Templates(directory=Path(__file__).resolve().parent.parent / "templates")
# A repo or pipeline name as one URL segment: vision/images → vision%2Fimages (the routes take
# {repo:qualified}, which decodes it).
TEMPLATES.env.filters["seg"] = lambda value: quote(str(value), safe="")


class LoginRequired(Unauthorized):
    """No token yet: pages answer with the login form rather than an error."""


def get_context(request: Request) -> Context:
    context: Context = request.app.state.context
    return context


ContextDep = Annotated[Context, Depends(get_context)]


def user_token(request: Request, ctx: ContextDep) -> str | None:
    """The user's token: the console's cookie, or a bearer header (scripts, curl)."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    token = value.strip() if scheme.lower() == "bearer" else request.cookies.get(TOKEN_COOKIE)
    if ctx.settings.api_tokens and not token:
        raise LoginRequired("sign in with an API token to use the console")
    return token or None


TokenDep = Annotated[str | None, Depends(user_token)]


async def backends(ctx: ContextDep, token: TokenDep) -> AsyncIterator[Backends]:
    async with Backends.open(ctx.settings, token, ctx.transport) as opened:
        yield opened


BackendsDep = Annotated[Backends, Depends(backends)]
