"""``/v1/auth``: who am I, tokens, roles, worker credentials and the audit log.

Admins manage tokens; the owner of a repo or pipeline (or an admin) grants roles on it. The
scheduler (an admin) asks for a worker token per job and revokes it when the job ends.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi import APIRouter, Path, Query, Request, Response, status

from tusk.auth.audit import set_audit_resource
from tusk.auth.http import AdminDep, PrincipalDep
from tusk.auth.principal import RESOURCE_PATTERN, Principal, WorkerScope, parse_resource
from tusk.errors import Forbidden, InvalidArgument
from tusk_repo import access
from tusk_repo.api.access import forget_roles
from tusk_repo.api.deps import ContextDep
from tusk_repo.auth_schemas import (
    AuditEntry,
    AuditRecordCreate,
    RoleGrant,
    RoleInfo,
    TokenCreate,
    TokenCreated,
    TokenInfo,
    WorkerTokenCreate,
    WorkerTokenCreated,
)
from tusk_repo.auth_tables import RoleRow, TokenRow
from tusk_repo.schemas import ErrorBody

router = APIRouter(
    prefix="/auth",
    tags=["auth"],
    responses={
        400: {"model": ErrorBody},
        401: {"model": ErrorBody},
        403: {"model": ErrorBody},
        404: {"model": ErrorBody},
    },
)

_IDENTITY_QUERY = Query(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,127}$")
_RESOURCE_QUERY = Query(None, pattern=RESOURCE_PATTERN)


@router.get("/whoami", response_model=Principal)
async def whoami(principal: PrincipalDep) -> Principal:
    """The caller: its identity, whether it is an admin, its roles (or a worker's scope).
    Without authentication (no TUSK_API_TOKENS) everyone is ``anonymous``, an admin."""
    return principal


@router.post("/tokens", status_code=status.HTTP_201_CREATED, response_model=TokenCreated)
async def create_token(
    body: TokenCreate, request: Request, principal: AdminDep, ctx: ContextDep
) -> TokenCreated:
    """Make a token for an identity (admins only). The answer holds the secret, once."""
    expires = timedelta(seconds=body.expires_in_seconds) if body.expires_in_seconds else None
    async with ctx.db.session() as session:
        token, row = await access.create_token(
            session,
            body.identity,
            created_by=principal.name,
            description=body.description,
            expires_in=expires,
        )
    set_audit_resource(request.scope, f"identity:{body.identity}")
    return TokenCreated(token=token, **_token_fields(row))


@router.get("/tokens", response_model=list[TokenInfo])
async def list_tokens(
    _: AdminDep,
    ctx: ContextDep,
    identity: str | None = _IDENTITY_QUERY,
    revoked: bool = Query(False, description="Include revoked tokens"),
) -> list[TokenInfo]:
    """Tokens (never their secrets), oldest first; workers' tokens are not listed."""
    async with ctx.db.session(write=False) as session:
        rows = await access.list_tokens(session, identity=identity, include_revoked=revoked)
    return [TokenInfo(**_token_fields(r)) for r in rows]


@router.delete(
    "/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response
)
async def revoke_token(
    request: Request,
    principal: PrincipalDep,
    ctx: ContextDep,
    token_id: str = Path(pattern=r"^[0-9a-f]{16}$", description="From GET /v1/auth/tokens"),
) -> Response:
    """Revoke a token: admins any, others their own. Revoking twice is no error."""
    async with ctx.db.session() as session:
        row = await access.get_token(session, token_id)
        if not principal.admin and (principal.worker is not None or row.identity != principal.name):
            raise Forbidden(f"{principal.name} may revoke only its own tokens")
        await access.revoke_token(session, token_id)
    set_audit_resource(request.scope, f"identity:{row.identity}")
    forget_roles(request)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/roles", status_code=status.HTTP_201_CREATED, response_model=RoleInfo)
async def grant_role(
    body: RoleGrant, request: Request, principal: PrincipalDep, ctx: ContextDep
) -> RoleInfo:
    """Give an identity a role: on a repo or pipeline (its owners and admins may), or admin
    (admins may). A new grant on the same resource replaces the old one."""
    set_audit_resource(request.scope, body.resource or "admin")
    _check_may_grant(principal, body.resource)
    async with ctx.db.session() as session:
        row = await access.grant(
            session, body.identity, body.role, body.resource, by=principal.name
        )
    forget_roles(request)
    return _role_info(row)


@router.delete("/roles", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def revoke_role(
    request: Request,
    principal: PrincipalDep,
    ctx: ContextDep,
    identity: str = Query(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,127}$"),
    resource: str | None = _RESOURCE_QUERY,
) -> Response:
    """Take an identity's role on a resource (its admin role without ``resource``). Taking a
    role it does not hold is no error."""
    set_audit_resource(request.scope, resource or "admin")
    _check_may_grant(principal, resource)
    async with ctx.db.session() as session:
        await access.revoke_role(session, identity, resource)
    forget_roles(request)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/roles", response_model=list[RoleInfo])
async def list_roles(
    principal: PrincipalDep,
    ctx: ContextDep,
    identity: str | None = _IDENTITY_QUERY,
    resource: str | None = _RESOURCE_QUERY,
) -> list[RoleInfo]:
    """Grants: admins see all; others their own and those on resources they own."""
    async with ctx.db.session(write=False) as session:
        rows = await access.list_roles(session, identity=identity, resource=resource)
    return [
        _role_info(r)
        for r in rows
        if principal.admin or r.identity == principal.name or _owns(principal, r.resource)
    ]


@router.post(
    "/worker-tokens", status_code=status.HTTP_201_CREATED, response_model=WorkerTokenCreated
)
async def create_worker_token(
    body: WorkerTokenCreate, request: Request, principal: AdminDep, ctx: ContextDep
) -> WorkerTokenCreated:
    """A credential for one job's workers (the scheduler asks): read the job's input repos and
    its output repo, write files only into its output and meta commits. With ``spout``, a
    spout's: it also makes its own commits on its output repo (``job`` names the credential,
    by which it is revoked when the spout stops)."""
    scope = WorkerScope(
        job=body.job,
        pipeline=body.pipeline,
        output_repo=body.output_repo,
        read_repos=tuple(sorted(set(body.read_repos))),
        write_commits=tuple(body.write_commits),
        spout=body.spout,
    )
    async with ctx.db.session() as session:
        token, row = await access.create_token(
            session,
            f"pipeline:{body.pipeline}",
            created_by=principal.name,
            description=f"spout of pipeline {body.pipeline}"
            if body.spout
            else f"worker of job {body.job}",
            expires_in=timedelta(seconds=body.expires_in_seconds),
            job=body.job,
            scope=scope,
        )
    set_audit_resource(request.scope, f"pipeline:{body.pipeline}")
    return WorkerTokenCreated(id=row.id, token=token, scope=scope)


@router.delete(
    "/worker-tokens/{job}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response
)
async def revoke_worker_tokens(
    request: Request,
    _: AdminDep,
    ctx: ContextDep,
    job: str = Path(pattern=r"^[0-9a-f]{32}$", description="The job's id"),
) -> Response:
    """Revoke every worker token of a job (when it ends). Idempotent."""
    async with ctx.db.session() as session:
        await access.revoke_job_tokens(session, job)
    forget_roles(request)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/audit", status_code=status.HTTP_201_CREATED, response_class=Response)
async def record_audit(body: AuditRecordCreate, _: AdminDep, ctx: ContextDep) -> Response:
    """Add an entry: the other services record their writes (pipelines, jobs) here, so one
    log holds every write (administrators: the services' own tokens)."""
    async with ctx.db.session() as session:
        await access.record(session, **body.model_dump())
    return Response(status_code=status.HTTP_201_CREATED)


@router.get("/audit", response_model=list[AuditEntry])
async def audit(
    _: AdminDep,
    ctx: ContextDep,
    identity: str | None = _IDENTITY_QUERY,
    resource: str | None = Query(None, max_length=80, description="e.g. repo:raw"),
    since: datetime | None = Query(None, description="Entries at or after this time"),
    before: int | None = Query(None, ge=1, description="Continue below this seq"),
    limit: int = Query(100, ge=1, le=10_000),
) -> list[AuditEntry]:
    """Writes and grants, newest first (recorded while authentication is on)."""
    async with ctx.db.session(write=False) as session:
        rows = await access.list_audit(
            session, identity=identity, resource=resource, since=since, before=before, limit=limit
        )
    return [
        AuditEntry(
            seq=r.seq,
            at=r.at,
            identity=r.identity,
            action=r.action,
            target=r.target,
            resource=r.resource,
            status=r.status,
            request_id=r.request_id,
        )
        for r in rows
    ]


def _check_may_grant(principal: Principal, resource: str | None) -> None:
    if resource is None:
        principal.require_admin()
        return
    target = parse_resource(resource)
    if target.name == "*":
        if not principal.admin:
            raise Forbidden(f"{principal.name} may not grant on every {target.kind}: admins only")
        return
    principal.require(target.kind, target.name, "owner")


def _owns(principal: Principal, resource: str) -> bool:
    try:
        target = parse_resource(resource)
    except InvalidArgument:
        return False
    return target.name != "*" and principal.can(target.kind, target.name, "owner")


def _token_fields(row: TokenRow) -> dict[str, object]:
    return {
        "id": row.id,
        "identity": row.identity,
        "description": row.description,
        "created_by": row.created_by,
        "created_at": row.created_at,
        "expires_at": row.expires_at,
        "revoked_at": row.revoked_at,
        "job": row.job,
    }


def _role_info(row: RoleRow) -> RoleInfo:
    return RoleInfo(
        identity=row.identity,
        role=row.role,
        resource=None if row.resource == access.ADMIN_RESOURCE else row.resource,
        granted_by=row.granted_by,
        granted_at=row.granted_at,
    )
