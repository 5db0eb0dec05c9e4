"""Request and response models of ``/v1/auth``."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from tusk.auth.principal import IDENTITY_PATTERN, Role, WorkerScope
from tusk.paths import NAME_RE


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


Identity = Field(pattern=IDENTITY_PATTERN, description="Who: a user or a service, e.g. alice")


class TokenCreate(_Model):
    identity: str = Identity
    description: str = Field(default="", max_length=1000)
    expires_in_seconds: int | None = Field(
        default=None, ge=60, le=10 * 365 * 86400, description="Unset: until revoked"
    )


class TokenInfo(_Model):
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


class RoleGrant(_Model):
    identity: str = Identity
    role: Role
    resource: str | None = Field(
        default=None,
        pattern=r"^(repo|pipeline):([A-Za-z0-9_-]{1,63}|\*)$",
        description="repo:NAME or pipeline:NAME (NAME may be *); none for admin",
    )


class RoleInfo(_Model):
    identity: str
    role: Role
    resource: str | None
    granted_by: str
    granted_at: datetime


class WorkerCommit(_Model):
    repo: str = Field(pattern=NAME_RE.pattern)
    commit: str = Field(pattern=r"^[0-9a-f]{32}$")


class WorkerTokenCreate(_Model):
    job: str = Field(pattern=r"^[0-9a-f]{32}$")
    pipeline: str = Field(pattern=NAME_RE.pattern)
    output_repo: str = Field(pattern=NAME_RE.pattern)
    read_repos: list[str] = Field(default_factory=list, max_length=1000)
    write_commits: list[str] = Field(
        min_length=1, max_length=2, description="The job's output and meta commits"
    )
    expires_in_seconds: int = Field(
        default=7 * 86400, ge=60, le=366 * 86400, description="A safety net: revoked at the end"
    )


class WorkerTokenCreated(_Model):
    id: str
    token: str
    scope: WorkerScope


class AuditRecordCreate(_Model):
    """An entry another service records (one of its own writes)."""

    identity: str = Field(max_length=128)
    action: str = Field(pattern=r"^[A-Z]{1,16}$")
    target: str = Field(max_length=4000)
    resource: str | None = Field(default=None, max_length=80)
    status: int = Field(ge=100, le=599)
    request_id: str | None = Field(default=None, max_length=64)


class AuditEntry(_Model):
    seq: int
    at: datetime
    identity: str
    action: str = Field(description="The HTTP method")
    target: str = Field(description="The path and query")
    resource: str | None
    status: int
    request_id: str | None
