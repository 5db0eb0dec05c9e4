"""The repo service's identity tables (prefix ``repo_auth_``): tokens, role grants, audit log.

Identities have no table of their own: an identity is a name that holds tokens or grants.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tusk.db import Base, UTCDateTime

BigId = BigInteger().with_variant(Integer(), "sqlite")


class TokenRow(Base):
    """A bearer token: only the SHA-256 of it is kept. A worker's token carries its scope."""

    __tablename__ = "repo_auth_tokens"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    identity: Mapped[str] = mapped_column(String(128), index=True)
    hash: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    job: Mapped[str | None] = mapped_column(String(32), index=True)
    scope: Mapped[dict[str, object] | None] = mapped_column(JSON(none_as_null=True))


class RoleRow(Base):
    """``identity`` holds ``role`` on ``resource`` (``repo:raw``, ``pipeline:*``; ``*`` for
    admin). One role per identity and resource: a new grant replaces the old."""

    __tablename__ = "repo_auth_roles"

    identity: Mapped[str] = mapped_column(String(128), primary_key=True)
    resource: Mapped[str] = mapped_column(String(80), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    granted_by: Mapped[str] = mapped_column(String(128))
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AuditRow(Base):
    """One write or grant: who, what, on which resource, and how it ended."""

    __tablename__ = "repo_auth_audit"
    __table_args__ = (Index("ix_repo_auth_audit_identity_seq", "identity", "seq"),)

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    identity: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(Text)
    resource: Mapped[str | None] = mapped_column(String(80), index=True)
    status: Mapped[int] = mapped_column(Integer)
    request_id: Mapped[str | None] = mapped_column(String(64))
