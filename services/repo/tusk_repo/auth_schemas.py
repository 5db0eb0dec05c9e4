"""Request models of ``/v1/auth``, and its answers: the wire models of :mod:`tusk.wire.auth`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from tusk.auth.principal import IDENTITY_PATTERN, RESOURCE_PATTERN, Role
from tusk.paths import MAX_QUALIFIED_NAME_LENGTH, QUALIFIED_NAME_RE
from tusk.wire.auth import AuditEntry, RoleInfo, TokenCreated, TokenInfo, WorkerTokenCreated

__all__ = [
    "AuditEntry",
    "AuditRecordCreate",
    "RoleGrant",
    "RoleInfo",
    "TokenCreate",
    "TokenCreated",
    "TokenInfo",
    "WorkerCommit",
    "WorkerTokenCreate",
    "WorkerTokenCreated",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


Identity = Field(pattern=IDENTITY_PATTERN, description="Who: a user or a service, e.g. alice")


class TokenCreate(_Model):
    identity: str = Identity
    description: str = Field(default="", max_length=1000)
    expires_in_seconds: int | None = Field(
        default=None, ge=60, le=10 * 365 * 86400, description="Unset: until revoked"
    )


class RoleGrant(_Model):
    identity: str = Identity
    role: Role
    resource: str | None = Field(
        default=None,
        pattern=RESOURCE_PATTERN,
        description="repo:NAME or pipeline:NAME (NAME may be * or PROJECT/NAME); none for "
        "admin",
    )


class WorkerCommit(_Model):
    repo: str = Field(pattern=QUALIFIED_NAME_RE.pattern, max_length=MAX_QUALIFIED_NAME_LENGTH)
    commit: str = Field(pattern=r"^[0-9a-f]{32}$")


class WorkerTokenCreate(_Model):
    job: str = Field(pattern=r"^[0-9a-f]{32}$")
    pipeline: str = Field(pattern=QUALIFIED_NAME_RE.pattern, max_length=MAX_QUALIFIED_NAME_LENGTH)
    output_repo: str = Field(
        pattern=QUALIFIED_NAME_RE.pattern, max_length=MAX_QUALIFIED_NAME_LENGTH
    )
    read_repos: list[str] = Field(default_factory=list, max_length=1000)
    write_commits: list[str] = Field(
        default_factory=list,
        max_length=2,
        description="The job's output and meta commits; none for a spout's or a service's "
        "command (a service only reads)",
    )
    spout: bool = Field(
        default=False,
        description="A spout's credential: it opens, finishes and abandons commits on its "
        "output repo and writes into them (``job`` is then the credential's own id)",
    )
    expires_in_seconds: int = Field(
        default=7 * 86400, ge=60, le=366 * 86400, description="A safety net: revoked at the end"
    )


class AuditRecordCreate(_Model):
    """An entry another service records (one of its own writes)."""

    identity: str = Field(max_length=128)
    action: str = Field(pattern=r"^[A-Z]{1,16}$")
    target: str = Field(max_length=4000)
    resource: str | None = Field(default=None, max_length=80)
    status: int = Field(ge=100, le=599)
    request_id: str | None = Field(default=None, max_length=64)
