"""SQL for identities' tokens, their roles and the audit log."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tusk_repo.auth_tables import AuditRow, RoleRow, TokenRow


async def token_by_id(session: AsyncSession, token_id: str) -> TokenRow | None:
    return await session.get(TokenRow, token_id)


async def add_token(session: AsyncSession, row: TokenRow) -> None:
    session.add(row)
    await session.flush()


async def list_tokens(
    session: AsyncSession, *, identity: str | None = None, include_revoked: bool = False
) -> Sequence[TokenRow]:
    """Tokens of people (not of jobs), oldest first."""
    query = select(TokenRow).where(TokenRow.job.is_(None)).order_by(TokenRow.created_at)
    if identity is not None:
        query = query.where(TokenRow.identity == identity)
    if not include_revoked:
        query = query.where(TokenRow.revoked_at.is_(None))
    return (await session.scalars(query)).all()


async def revoke_job_tokens(session: AsyncSession, job: str, at: datetime) -> int:
    """Revoke every worker token of a job not yet revoked; the number revoked now."""
    result = await session.execute(
        update(TokenRow)
        .where(TokenRow.job == job, TokenRow.revoked_at.is_(None))
        .values(revoked_at=at)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def role_of(session: AsyncSession, identity: str, resource: str) -> RoleRow | None:
    return await session.get(RoleRow, (identity, resource))


async def add_role(session: AsyncSession, row: RoleRow) -> None:
    session.add(row)
    await session.flush()


async def delete_role(session: AsyncSession, identity: str, resource: str) -> bool:
    """Whether there was one to delete."""
    result = await session.execute(
        delete(RoleRow).where(RoleRow.identity == identity, RoleRow.resource == resource)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def delete_roles_on(session: AsyncSession, resource: str) -> None:
    await session.execute(delete(RoleRow).where(RoleRow.resource == resource))


async def list_roles(
    session: AsyncSession, *, identity: str | None = None, resource: str | None = None
) -> Sequence[RoleRow]:
    query = select(RoleRow).order_by(RoleRow.identity, RoleRow.resource)
    if identity is not None:
        query = query.where(RoleRow.identity == identity)
    if resource is not None:
        query = query.where(RoleRow.resource == resource)
    return (await session.scalars(query)).all()


async def add_audit(session: AsyncSession, row: AuditRow) -> None:
    session.add(row)
    await session.flush()


async def list_audit(
    session: AsyncSession,
    *,
    identity: str | None = None,
    resource: str | None = None,
    since: datetime | None = None,
    before: int | None = None,
    limit: int = 100,
) -> Sequence[AuditRow]:
    """The newest entries first; ``before``: continue below this sequence number."""
    query = select(AuditRow).order_by(AuditRow.seq.desc()).limit(limit)
    if identity is not None:
        query = query.where(AuditRow.identity == identity)
    if resource is not None:
        query = query.where(AuditRow.resource == resource)
    if since is not None:
        query = query.where(AuditRow.at >= since)
    if before is not None:
        query = query.where(AuditRow.seq < before)
    return (await session.scalars(query)).all()
