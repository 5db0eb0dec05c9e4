"""What ``/v1/auth`` of the repo service answers: tokens, roles, the audit log."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from tusk.auth.principal import Role, WorkerScope
from tusk.wire.base import WireModel


class TokenInfo(WireModel):
    id: str
    identity: str
    description: str
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    job: str | None = None


class TokenCreated(TokenInfo):
    token: str = Field(description="The secret: shown once, stored only as a hash")


class RoleInfo(WireModel):
    identity: str
    role: Role
    resource: str | None
    granted_by: str
    granted_at: datetime


class WorkerTokenCreated(WireModel):
    id: str
    token: str
    scope: WorkerScope


class AuditEntry(WireModel):
    seq: int
    at: datetime
    identity: str
    action: str = Field(description="The HTTP method")
    target: str = Field(description="The path and query")
    resource: str | None
    status: int
    request_id: str | None
