"""Projects: the namespaces of repos and pipelines. Who may call: as ``/v1/repos``
(:func:`tusk_repo.api.access.repo_access`, added where the router is included)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from tusk_repo.api.deps import ContextDep, ProjectName
from tusk_repo.schemas import ErrorBody, ProjectCreate, ProjectInfo

router = APIRouter(tags=["projects"], responses={400: {"model": ErrorBody}})


@router.post(
    "/projects",
    status_code=status.HTTP_201_CREATED,
    response_model=ProjectInfo,
    responses={409: {"model": ErrorBody}},
)
async def create_project(body: ProjectCreate, ctx: ContextDep) -> ProjectInfo:
    """Create a project: a namespace of repos and pipelines, named ``<project>/<name>``.
    ``default`` always exists and holds those named without a project."""
    async with ctx.db.session() as session:
        return await ctx.service.create_project(session, body.name, body.description)


@router.get("/projects", response_model=list[ProjectInfo])
async def list_projects(ctx: ContextDep) -> list[ProjectInfo]:
    async with ctx.db.session(write=False) as session:
        return await ctx.service.list_projects(session)


@router.get(
    "/projects/{project}", response_model=ProjectInfo, responses={404: {"model": ErrorBody}}
)
async def inspect_project(project: ProjectName, ctx: ContextDep) -> ProjectInfo:
    async with ctx.db.session(write=False) as session:
        return await ctx.service.get_project(session, project)


@router.delete(
    "/projects/{project}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}},
)
async def delete_project(project: ProjectName, ctx: ContextDep) -> Response:
    """Delete an empty project: refused (409) while it holds repos; ``default`` stays."""
    async with ctx.db.session() as session:
        await ctx.service.delete_project(session, project)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
