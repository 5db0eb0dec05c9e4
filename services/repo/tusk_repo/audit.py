"""The audit log: every write request (and every grant, token and revocation, which are
writes to ``/v1/auth``) is recorded with who made it and how it ended, once it has been
answered, so that recording costs the caller no time."""

from __future__ import annotations

import re
from collections.abc import Callable

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tusk.auth.principal import Principal
from tusk.db import Database
from tusk_repo import access

log = structlog.get_logger()

_READS = frozenset({"GET", "HEAD", "OPTIONS"})
_REPO_PATH = re.compile(r"^/v1/repos/([^/]+)")


class AuditMiddleware:
    """Records writes once authentication is on (without it there is nobody to name)."""

    def __init__(self, app: ASGIApp, db: Callable[[], Database], enabled: bool) -> None:
        self.app = app
        self.db = db
        self.enabled = enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.enabled or scope["type"] != "http" or scope["method"] in _READS:
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            await self._record(scope, status)

    async def _record(self, scope: Scope, status: int) -> None:
        state = scope.get("state", {})
        principal = state.get("principal")
        if not isinstance(principal, Principal):
            return  # refused before anyone was known (401): nothing to attribute
        path = scope["path"]
        query = scope.get("query_string", b"").decode("latin-1")
        resource = state.get("audit_resource")
        if resource is None and (match := _REPO_PATH.match(path)):
            resource = f"repo:{match[1]}"
        request_id = structlog.contextvars.get_contextvars().get("request_id")
        try:
            async with self.db().session() as session:
                await access.record(
                    session,
                    identity=principal.name,
                    action=scope["method"],
                    target=f"{path}?{query}" if query else path,
                    resource=resource,
                    status=status,
                    request_id=request_id,
                )
        except Exception as e:  # the write itself is done; its record is logged instead
            log.error(
                "audit record failed",
                identity=principal.name,
                action=scope["method"],
                path=path,
                status=status,
                error=repr(e),
            )
