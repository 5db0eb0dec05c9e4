from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response, status

from tusk.auth.audit import set_audit_resource
from tusk_repo import access
from tusk_repo.api.access import RepoOwnerDep, RepoReaderDep, forget_roles
from tusk_repo.api.deps import ContextDep, RepoName
from tusk_repo.schemas import ErrorBody, RepoCreate, RepoInfo

router = APIRouter(tags=["repos"], responses={400: {"model": ErrorBody}, 404: {"model": ErrorBody}})


@router.post(
    "/repos",
    status_code=status.HTTP_201_CREATED,
    response_model=RepoInfo,
    responses={409: {"model": ErrorBody}},
)
async def create_repo(
    body: RepoCreate, request: Request, ctx: ContextDep, principal: RepoReaderDep
) -> RepoInfo:
    """Create a repo. Names are 1-63 letters, digits, '_' or '-', optionally after a project
    that exists and '/' (``vision/images``; 404 when the project does not exist). Its creator
    owns it."""
    set_audit_resource(request.scope, f"repo:{body.name}")
    async with ctx.db.session() as session:
        repo = await ctx.service.create_repo(
            session, body.name, body.description, pipeline=body.pipeline
        )
        if not principal.admin:
            await access.grant(session, principal.name, "owner", f"repo:{repo.name}", by="creator")
        info = await ctx.service.repo_info(session, repo)
    forget_roles(request)
    return info


@router.get("/repos", response_model=list[RepoInfo])
async def list_repos(ctx: ContextDep, principal: RepoReaderDep) -> list[RepoInfo]:
    """The repos the caller may read."""
    async with ctx.db.session(write=False) as session:
        repos = await ctx.service.list_repos(session)
    return [r for r in repos if principal.can("repo", r.name, "reader")]


@router.get("/repos/{repo:qualified}", response_model=RepoInfo)
async def inspect_repo(repo: RepoName, ctx: ContextDep) -> RepoInfo:
    async with ctx.db.session(write=False) as session:
        return await ctx.service.repo_info(session, await ctx.service.get_repo(session, repo))


@router.delete(
    "/repos/{repo:qualified}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={409: {"model": ErrorBody}},
)
async def delete_repo(
    repo: RepoName,
    request: Request,
    ctx: ContextDep,
    _: RepoOwnerDep,
    force: bool = Query(False, description="Delete even if other repos' provenance names it"),
) -> Response:
    """Delete a repo with its branches and commits. Refused while commits of other repos name
    it in their provenance, unless ``force``."""
    async with ctx.db.session() as session:
        await ctx.service.delete_repo(session, repo, force=force)
        await access.forget_resource(session, f"repo:{repo}")
    forget_roles(request)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
