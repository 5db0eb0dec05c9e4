"""The audit log's middleware: every write request (and every grant, token and revocation,
which are writes to ``/v1/auth``) is recorded with who made it and how it ended, once it has
been answered, so that recording costs the caller no time. Where the record goes is the
service's: the repo service's table, which the others reach through its API."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tusk.auth.principal import Principal

log = structlog.get_logger()

_READS = frozenset({"GET", "HEAD", "OPTIONS"})
# What other services record through the repo service is recorded as theirs, not again.
_NOT_RECORDED = frozenset({"/v1/auth/audit"})
_RESOURCE_PATHS = (
    (re.compile(r"^/v1/repos/([^/]+)"), "repo"),
    (re.compile(r"^/v1/pipelines/([^/]+)"), "pipeline"),
)


@dataclass(frozen=True)
class AuditRecord:
    identity: str
    action: str
    target: str
    resource: str | None
    status: int
    request_id: str | None


Sink = Callable[[AuditRecord], Awaitable[None]]


def set_audit_resource(scope: Scope, resource: str) -> None:
    """Name the resource a request acted on, where its path does not say (a body did)."""
    scope.setdefault("state", {})["audit_resource"] = resource[:80]


class AuditMiddleware:
    """Records writes once authentication is on (without it there is nobody to name)."""

    def __init__(self, app: ASGIApp, sink: Sink, enabled: bool) -> None:
        self.app = app
        self.sink = sink
        self.enabled = enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            not self.enabled
            or scope["type"] != "http"
            or scope["method"] in _READS
            or scope["path"] in _NOT_RECORDED
        ):
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
        if resource is None:
            for pattern, kind in _RESOURCE_PATHS:
                if match := pattern.match(path):
                    resource = f"{kind}:{match[1]}"[:80]
                    break
        record = AuditRecord(
            identity=principal.name,
            action=scope["method"],
            target=(f"{path}?{query}" if query else path)[:4000],
            resource=resource,
            status=status,
            request_id=structlog.contextvars.get_contextvars().get("request_id"),
        )
        try:
            await self.sink(record)
        except Exception as e:  # the write itself is done; its record is logged instead
            log.error("audit record failed", record=record, error=repr(e))
