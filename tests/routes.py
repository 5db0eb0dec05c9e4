"""Helpers for tests that check every route of an app."""

from __future__ import annotations

from typing import Any

from tusk.auth.http import is_authorization
from tusk.routing import RouteInfo, routes

__all__ = ["RouteInfo", "authorized", "routes"]


def authorized(dependant: Any) -> bool:
    """Whether an authorization dependency is among the route's dependencies."""
    return any(
        is_authorization(d.call) or authorized(d) for d in getattr(dependant, "dependencies", ())
    )
