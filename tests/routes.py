"""The routes of a FastAPI app, flattened (included routers expanded), for tests that check
every route."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import Route

from tusk.auth.http import is_authorization


@dataclass(frozen=True)
class RouteInfo:
    path: str
    methods: frozenset[str]
    dependant: Any  # None for a plain Starlette route
    in_schema: bool


def routes(app: FastAPI) -> Iterator[RouteInfo]:
    for route in app.routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is not None:  # an included router
            for context in contexts():
                yield RouteInfo(
                    context.path,
                    frozenset(context.methods),
                    context.dependant,
                    context.include_in_schema,
                )
        elif isinstance(route, APIRoute):
            yield RouteInfo(
                route.path, frozenset(route.methods), route.dependant, route.include_in_schema
            )
        elif isinstance(route, Route):
            yield RouteInfo(route.path, frozenset(route.methods or ()), None, False)


def authorized(dependant: Any) -> bool:
    """Whether an authorization dependency is among the route's dependencies."""
    return any(
        is_authorization(d.call) or authorized(d) for d in getattr(dependant, "dependencies", ())
    )
