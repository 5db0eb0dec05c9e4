from __future__ import annotations

from fastapi import APIRouter, Response, status

from tusk_repo.api.deps import BranchName, ContextDep, RepoName
from tusk_repo.schemas import BranchCreate, BranchInfo, BranchMove, ErrorBody

router = APIRouter(
    tags=["branches"],
    responses={400: {"model": ErrorBody}, 404: {"model": ErrorBody}, 409: {"model": ErrorBody}},
)


@router.post(
    "/repos/{repo:qualified}/branches",
    status_code=status.HTTP_201_CREATED,
    response_model=BranchInfo,
)
async def create_branch(repo: RepoName, body: BranchCreate, ctx: ContextDep) -> BranchInfo:
    """Create a branch, empty or starting at ``head`` (a branch or commit, with ``^N``)."""
    async with ctx.db.session() as session:
        row = await ctx.service.get_repo(session, repo)
        branch = await ctx.service.create_branch(session, row, body.name, body.head)
        return ctx.service.branch_info(row, branch)


@router.get("/repos/{repo:qualified}/branches", response_model=list[BranchInfo])
async def list_branches(repo: RepoName, ctx: ContextDep) -> list[BranchInfo]:
    async with ctx.db.session(write=False) as session:
        return await ctx.service.list_branches(session, await ctx.service.get_repo(session, repo))


@router.get("/repos/{repo:qualified}/branches/{branch}", response_model=BranchInfo)
async def inspect_branch(repo: RepoName, branch: BranchName, ctx: ContextDep) -> BranchInfo:
    async with ctx.db.session(write=False) as session:
        row = await ctx.service.get_repo(session, repo)
        return ctx.service.branch_info(row, await ctx.service.get_branch(session, row, branch))


@router.put("/repos/{repo:qualified}/branches/{branch}", response_model=BranchInfo)
async def move_branch(
    repo: RepoName, branch: BranchName, body: BranchMove, ctx: ContextDep
) -> BranchInfo:
    """Point the branch's head at another finished commit."""
    async with ctx.db.session() as session:
        row = await ctx.service.get_repo(session, repo)
        moved = await ctx.service.move_branch(session, row, branch, body.head)
        return ctx.service.branch_info(row, moved)


@router.delete("/repos/{repo:qualified}/branches/{branch}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_branch(repo: RepoName, branch: BranchName, ctx: ContextDep) -> Response:
    """Delete a branch; its commits stay reachable by id."""
    async with ctx.db.session() as session:
        row = await ctx.service.get_repo(session, repo)
        await ctx.service.delete_branch(session, row, branch)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
