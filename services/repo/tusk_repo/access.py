"""Identities, tokens, roles and the audit log: the SQL behind ``/v1/auth``.

Like :class:`tusk_repo.service.RepoService`, every method takes the session explicitly and
only flushes; the request's session commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tusk.auth.principal import Grant, Principal, Role, WorkerScope
from tusk.auth.tokens import hash_token, new_token, same_hash, token_id_of
from tusk.errors import InvalidArgument, NotFound
from tusk_repo.auth_tables import AuditRow, RoleRow, TokenRow

ADMIN_RESOURCE = "*"  # the resource column of an admin grant


async def principal_for(session: AsyncSession, token: str) -> Principal | None:
    """Who holds ``token`` (one of ours, not revoked or expired); None otherwise."""
    token_id = token_id_of(token)
    if token_id is None:
        return None
    row = await session.get(TokenRow, token_id)
    # The hash is compared even for an unknown id, so both cases take the same time.
    known = row.hash if row is not None else "0" * 64
    if not same_hash(hash_token(token), known) or row is None:
        return None
    now = datetime.now(UTC)
    if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        return None
    if row.scope is not None:
        return Principal(
            name=row.identity, worker=WorkerScope.model_validate(row.scope), token_id=row.id
        )
    roles = await list_roles(session, identity=row.identity)
    admin = any(r.role == "admin" for r in roles)
    grants = tuple(Grant(role=r.role, resource=r.resource) for r in roles if r.role != "admin")
    return Principal(name=row.identity, admin=admin, grants=grants, token_id=row.id)


async def create_token(
    session: AsyncSession,
    identity: str,
    *,
    created_by: str,
    description: str = "",
    expires_in: timedelta | None = None,
    job: str | None = None,
    scope: WorkerScope | None = None,
) -> tuple[str, TokenRow]:
    token, token_id = new_token()
    now = datetime.now(UTC)
    row = TokenRow(
        id=token_id,
        identity=identity,
        hash=hash_token(token),
        description=description,
        created_by=created_by,
        created_at=now,
        expires_at=now + expires_in if expires_in is not None else None,
        revoked_at=None,
        job=job,
        scope=scope.model_dump(mode="json") if scope is not None else None,
    )
    session.add(row)
    await session.flush()
    return token, row


async def list_tokens(
    session: AsyncSession, *, identity: str | None = None, include_revoked: bool = False
) -> Sequence[TokenRow]:
    query = select(TokenRow).where(TokenRow.job.is_(None)).order_by(TokenRow.created_at)
    if identity is not None:
        query = query.where(TokenRow.identity == identity)
    if not include_revoked:
        query = query.where(TokenRow.revoked_at.is_(None))
    return (await session.scalars(query)).all()


async def get_token(session: AsyncSession, token_id: str) -> TokenRow:
    row = await session.get(TokenRow, token_id)
    if row is None:
        raise NotFound(f"no token {token_id!r} (tusk auth token list shows them)")
    return row


async def revoke_token(session: AsyncSession, token_id: str) -> TokenRow:
    """Revoke a token; revoking one already revoked changes nothing (idempotent)."""
    row = await get_token(session, token_id)
    if row.revoked_at is None:
        row.revoked_at = datetime.now(UTC)
        await session.flush()
    return row


async def revoke_job_tokens(session: AsyncSession, job: str) -> int:
    """Revoke every worker token of a job; the number revoked now."""
    result = await session.execute(
        update(TokenRow)
        .where(TokenRow.job == job, TokenRow.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def grant(
    session: AsyncSession, identity: str, role: Role, resource: str | None, *, by: str
) -> RoleRow:
    if (role == "admin") != (resource is None):
        raise InvalidArgument(
            "the admin role takes no resource; reader, writer and owner need one "
            "(repo:NAME or pipeline:NAME)"
        )
    key = resource or ADMIN_RESOURCE
    row = await session.get(RoleRow, (identity, key))
    now = datetime.now(UTC)
    if row is None:
        row = RoleRow(identity=identity, resource=key, role=role, granted_by=by, granted_at=now)
        session.add(row)
    else:
        row.role, row.granted_by, row.granted_at = role, by, now
    await session.flush()
    return row


async def revoke_role(session: AsyncSession, identity: str, resource: str | None) -> bool:
    """Take ``identity``'s role on ``resource`` (its admin role when None); whether it had one."""
    result = await session.execute(
        delete(RoleRow).where(
            RoleRow.identity == identity, RoleRow.resource == (resource or ADMIN_RESOURCE)
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def forget_resource(session: AsyncSession, resource: str) -> None:
    """Drop every grant on a deleted resource, so a new one of the same name starts clean."""
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


async def record(
    session: AsyncSession,
    *,
    identity: str,
    action: str,
    target: str,
    resource: str | None,
    status: int,
    request_id: str | None,
) -> None:
    session.add(
        AuditRow(
            at=datetime.now(UTC),
            identity=identity,
            action=action,
            target=target[:4000],
            resource=resource,
            status=status,
            request_id=request_id,
        )
    )
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
