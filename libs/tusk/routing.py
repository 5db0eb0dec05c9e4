"""What the routes of an app are, included routers expanded; the ``Allow`` header; and
qualified names (``project/name``) as one path segment.

Starlette answers 405 with the methods of the first route whose path matched, not of every
route of that path (``/v1/repos`` has GET and POST in two routes), and OPTIONS is never
answered. :class:`AllowMiddleware` answers OPTIONS with every method of the path and corrects
the ``Allow`` header of a 405.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.convertors import Convertor, register_url_convertor
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send


@dataclass(frozen=True)
class RouteInfo:
    path: str
    path_regex: re.Pattern[str]
    methods: frozenset[str]
    dependant: Any  # FastAPI's, or None for a plain Starlette route
    in_schema: bool


def routes(app: FastAPI) -> Iterator[RouteInfo]:
    for route in app.routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is not None:  # an included router
            for context in contexts():
                yield RouteInfo(
                    context.path,
                    context.path_regex,
                    frozenset(context.methods),
                    context.dependant,
                    context.include_in_schema,
                )
        elif isinstance(route, APIRoute):
            yield RouteInfo(
                route.path,
                route.path_regex,
                frozenset(route.methods or ()),
                route.dependant,
                route.include_in_schema,
            )
        elif isinstance(route, Route):
            yield RouteInfo(
                route.path, route.path_regex, frozenset(route.methods or ()), None, False
            )


class AllowMiddleware:
    def __init__(self, app: ASGIApp, routed: FastAPI) -> None:
        self.app = app
        self.routed = routed
        self._table: list[tuple[re.Pattern[str], frozenset[str]]] | None = None

    def allowed(self, path: str) -> set[str]:
        if self._table is None:  # routes are all added once the app serves
            self._table = [(r.path_regex, r.methods) for r in routes(self.routed)]
        methods: set[str] = set()
        for regex, route_methods in self._table:
            if regex.match(path):
                methods |= route_methods
        if methods:
            methods.add("OPTIONS")
        return methods

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS" and (allowed := self.allowed(scope["path"])):
            response = Response(status_code=204, headers={"Allow": ", ".join(sorted(allowed))})
            await response(scope, receive, send)
            return

        async def send_allow(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 405:
                allowed = ", ".join(sorted(self.allowed(scope["path"])))
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"allow"]
                message["headers"] = [*headers, (b"allow", allowed.encode("latin-1"))]
            await send(message)

        await self.app(scope, receive, send_allow)


class QualifiedNameConvertor(Convertor[str]):
    """``{repo:qualified}``: one path segment, in which ``p/x`` arrives as ``p%2Fx`` (kept so by
    :class:`EncodedSlashMiddleware`) and is handed to the route decoded."""

    regex = "[^/]+"

    def convert(self, value: str) -> str:
        return unquote(value)

    def to_string(self, value: str) -> str:
        return quote(value, safe="")


register_url_convertor("qualified", QualifiedNameConvertor())


class EncodedSlashMiddleware:
    """uvicorn decodes ``%2F`` into ``scope["path"]``, so ``/v1/repos/p%2Fx`` would route as
    ``/v1/repos/p/x``. This rebuilds the path from ``raw_path``, keeping a segment that holds
    an encoded slash encoded; the ``qualified`` convertor decodes it where the name is read."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("raw_path") if scope["type"] in ("http", "websocket") else None
        if raw and b"%2f" in raw.lower():
            # Some servers and test transports leave the query string in raw_path.
            raw_path = raw.split(b"?", 1)[0].decode("latin-1")
            segments = [unquote(segment) for segment in raw_path.split("/")]
            path = "/".join(quote(s, safe="") if "/" in s else s for s in segments)
            scope = {**scope, "path": path}
        await self.app(scope, receive, send)
