"""Authentication as ASGI middleware, authorization as FastAPI dependencies.

The middleware finds who a request comes from (or answers 401) and leaves the
:class:`Principal` in the request's state; a route says what it needs with one of the
dependencies below (every route of every service has one: a test walks the routes). Plain
Starlette routes (the inference hot path) call :func:`principal_of` themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from tusk.auth.principal import ANONYMOUS, Principal, ResourceKind, Role
from tusk.auth.verify import Verifier
from tusk.errors import Unauthorized, Unavailable

# Probes answer without a token, so that orchestrators need no secret.
HEALTH_PATHS = frozenset({"/healthz", "/readyz"})
METRICS_PATHS = frozenset({"/metrics"})
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
NOBODY = Principal(name="anonymous")
"""Who calls a public path without a token: allowed nothing beyond it."""
_MARK = "__tusk_authorization__"


class AuthMiddleware:
    """When the verifier is enabled, every request but those to ``public_paths`` needs a
    token it knows. ``scope["path"]`` is matched exactly, so ``//metrics`` or
    ``/healthz/../v1/repos`` are not public."""

    def __init__(self, app: ASGIApp, verifier: Verifier, public_paths: Iterable[str]) -> None:
        self.app = app
        self.verifier = verifier
        self.public_paths = frozenset(public_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        if not self.verifier.enabled:
            state["principal"] = ANONYMOUS
            await self.app(scope, receive, send)
            return
        principal: Principal | None = None
        token = _bearer(scope)
        try:
            if token:
                principal = await self.verifier.verify(token)
        except Unavailable as e:
            await _answer(scope, receive, send, 503, e.message, "unavailable", {"Retry-After": "1"})
            return
        if principal is None:
            if scope["path"] in self.public_paths:
                state["principal"] = NOBODY
                await self.app(scope, receive, send)
                return
            message = (
                "invalid, revoked or expired bearer token"
                if token
                else "missing bearer token (set TUSK_TOKEN for the CLI)"
            )
            await _answer(scope, receive, send, 401, message, "unauthorized")
            return
        state["principal"] = principal
        await self.app(scope, receive, send)


def _bearer(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
    return None


async def _answer(
    scope: Scope,
    receive: Receive,
    send: Send,
    status: int,
    message: str,
    code: str,
    headers: dict[str, str] | None = None,
) -> None:
    if status == 401:
        headers = {"WWW-Authenticate": "Bearer", **(headers or {})}
    response = JSONResponse({"error": message, "code": code}, status_code=status, headers=headers)
    await response(scope, receive, send)


def principal_of(request: Request) -> Principal:
    """The caller, as the middleware found it. A route reached without the middleware (an app
    built without it) is refused rather than opened."""
    principal = request.scope.get("state", {}).get("principal")
    if not isinstance(principal, Principal):
        raise Unauthorized("no bearer token was checked for this request")
    return principal


def authorization(function: Callable[..., Any]) -> Callable[..., Any]:
    setattr(function, _MARK, True)
    return function


def is_authorization(function: object) -> bool:
    return bool(getattr(function, _MARK, False))


@authorization
def authenticated(request: Request) -> Principal:
    """Any caller the middleware let through (on a public path, possibly nobody)."""
    return principal_of(request)


@authorization
def require_admin(request: Request) -> Principal:
    principal = principal_of(request)
    principal.require_admin()
    return principal


@authorization
def public(request: Request) -> None:
    """Deliberately open to everyone (health probes)."""


def require_role(kind: ResourceKind, role: Role, param: str) -> Callable[[Request], Principal]:
    """The caller must hold ``role`` on the resource named by the path parameter ``param``."""

    @authorization
    def dependency(request: Request) -> Principal:
        principal = principal_of(request)
        principal.require(kind, request.path_params[param], role)
        return principal

    return dependency


PrincipalDep = Annotated[Principal, Depends(authenticated)]
AdminDep = Annotated[Principal, Depends(require_admin)]
