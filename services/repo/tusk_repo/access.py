"""Identities, tokens, roles and the audit log: the logic behind ``/v1/auth`` (its SQL is in
``tusk_repo.store.access``).

Like :class:`tusk_repo.service.RepoService`, every method takes the session explicitly and
only flushes; the request's session commits.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from tusk.auth.principal import Grant, Principal, Role, WorkerScope
from tusk.auth.tokens import hash_token, new_token, same_hash, token_id_of
from tusk.errors import InvalidArgument, NotFound
from tusk_repo.auth_tables import AuditRow, RoleRow, TokenRow
from tusk_repo.store import access as store
from tusk_repo.store.access import list_audit, list_roles, list_tokens

__all__ = [
    "ADMIN_RESOURCE",
    "create_token",
    "forget_resource",
    "get_token",
    "grant",
    "list_audit",
    "list_roles",
    "list_tokens",
    "principal_for",
    "record",
    "revoke_job_tokens",
    "revoke_role",
    "revoke_token",
]

ADMIN_RESOURCE = "*"  # the resource column of an admin grant


async def principal_for(session: AsyncSession, token: str) -> Principal | None:
    """Who holds ``token`` (one of ours, not revoked or expired); None otherwise."""
    token_id = token_id_of(token)
    if token_id is None:
        return None
    row = await store.token_by_id(session, token_id)
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
    await store.add_token(session, row)
    return token, row


async def get_token(session: AsyncSession, token_id: str) -> TokenRow:
    row = await store.token_by_id(session, token_id)
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
    return await store.revoke_job_tokens(session, job, datetime.now(UTC))


async def grant(
    session: AsyncSession, identity: str, role: Role, resource: str | None, *, by: str
) -> RoleRow:
    if (role == "admin") != (resource is None):
        raise InvalidArgument(
            "the admin role takes no resource; reader, writer and owner need one "
            "(repo:NAME or pipeline:NAME)"
        )
    key = resource or ADMIN_RESOURCE
    row = await store.role_of(session, identity, key)
    now = datetime.now(UTC)
    if row is None:
        row = RoleRow(identity=identity, resource=key, role=role, granted_by=by, granted_at=now)
        await store.add_role(session, row)
    else:
        row.role, row.granted_by, row.granted_at = role, by, now
        await session.flush()
    return row


async def revoke_role(session: AsyncSession, identity: str, resource: str | None) -> bool:
    """Take ``identity``'s role on ``resource`` (its admin role when None); whether it had one."""
    return await store.delete_role(session, identity, resource or ADMIN_RESOURCE)


async def forget_resource(session: AsyncSession, resource: str) -> None:
    """Drop every grant on a deleted resource, so a new one of the same name starts clean."""
    await store.delete_roles_on(session, resource)


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
    await store.add_audit(
        session,
        AuditRow(
            at=datetime.now(UTC),
            identity=identity,
            action=action,
            target=target[:4000],
            resource=resource,
            status=status,
            request_id=request_id,
        ),
    )
