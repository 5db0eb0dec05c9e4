from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Response, status

from tusk.errors import InvalidArgument
from tusk_repo.api.deps import CommitRef, ContextDep, RepoName
from tusk_repo.protection import Writer
from tusk_repo.schemas import (
    CommitFinish,
    CommitInfo,
    CommitRefModel,
    CommitStart,
    DiffResult,
    ErrorBody,
    HistoryEntry,
    Page,
)

router = APIRouter(
    tags=["commits"],
    responses={400: {"model": ErrorBody}, 404: {"model": ErrorBody}, 409: {"model": ErrorBody}},
)


@router.post(
    "/repos/{repo:qualified}/commits",
    status_code=status.HTTP_201_CREATED,
    response_model=CommitInfo,
)
async def start_commit(repo: RepoName, body: CommitStart, ctx: ContextDep) -> CommitInfo:
    """Open a commit on a branch (created if missing). Its parent is the branch's head, whose
    files it starts with unless ``empty``; a branch has at most one open commit. Provenance and
    global id are recorded as given."""
    async with ctx.db.session() as session:
        row = await ctx.service.get_repo(session, repo)
        commit = await ctx.service.start_commit(
            session,
            row,
            body.branch,
            description=body.description,
            provenance=body.provenance,
            global_id=body.global_id,
            empty=body.empty,
            writer=Writer(pipeline=body.pipeline, admin_override=body.admin_override),
        )
        return await ctx.service.commit_info(session, row, commit)


@router.get("/repos/{repo:qualified}/commits", response_model=Page[CommitInfo])
async def list_commits(
    repo: RepoName,
    ctx: ContextDep,
    branch: str | None = Query(None, description="Only commits started on this branch"),
    state: Literal["open", "finished"] | None = None,
    limit: int = Query(100, ge=1, le=10_000),
    cursor: str | None = Query(None, pattern=r"^[0-9]{1,18}$"),
) -> Page[CommitInfo]:
    """All commits of a repo, newest first."""
    async with ctx.db.session(write=False) as session:
        row = await ctx.service.get_repo(session, repo)
        commits, nxt = await ctx.service.list_commits(
            session,
            row,
            branch=branch,
            state=state,
            limit=limit,
            cursor=int(cursor) if cursor else None,
        )
        items = await ctx.service.commit_infos(session, row, commits)
        return Page[CommitInfo](items=items, next_cursor=str(nxt) if nxt is not None else None)


@router.get("/repos/{repo:qualified}/commits/{ref}", response_model=CommitInfo)
async def inspect_commit(repo: RepoName, ref: CommitRef, ctx: ContextDep) -> CommitInfo:
    async with ctx.db.session(write=False) as session:
        row = await ctx.service.get_repo(session, repo)
        return await ctx.service.commit_info(
            session, row, await ctx.service.resolve_commit(session, row, ref)
        )


@router.get("/repos/{repo:qualified}/commits/{ref}/log", response_model=Page[CommitInfo])
async def log(
    repo: RepoName,
    ref: CommitRef,
    ctx: ContextDep,
    limit: int = Query(100, ge=1, le=10_000),
    cursor: str | None = Query(None, pattern=r"^[0-9a-f]{32}$"),
) -> Page[CommitInfo]:
    """The ref's commit and its ancestors, newest first."""
    async with ctx.db.session(write=False) as session:
        row = await ctx.service.get_repo(session, repo)
        commits, nxt = await ctx.service.log(session, row, ref, limit=limit, cursor=cursor)
        items = await ctx.service.commit_infos(session, row, commits)
        return Page[CommitInfo](items=items, next_cursor=nxt)


@router.post("/repos/{repo:qualified}/commits/{ref}/finish", response_model=CommitInfo)
async def finish_commit(
    repo: RepoName, ref: CommitRef, ctx: ContextDep, body: CommitFinish | None = None
) -> CommitInfo:
    """Finish an open commit (by id, or the branch's open commit): its staged changes become
    its tree and the branch's head moves to it. With ``error`` it is finished marked failed."""
    async with ctx.db.session() as session:
        row = await ctx.service.get_repo(session, repo)
        commit = await ctx.service.finish_commit(
            session, row, ref, error=body.error if body else None, clear_staged=False
        )
        info = await ctx.service.commit_info(session, row, commit)
    ctx.staged.clear_later(commit.id)  # once the finish is committed, not within it
    return info


@router.delete("/repos/{repo:qualified}/commits/{ref}", status_code=status.HTTP_204_NO_CONTENT)
async def abandon_commit(repo: RepoName, ref: CommitRef, ctx: ContextDep) -> Response:
    """Abandon an open commit: it and its staged changes are dropped."""
    async with ctx.db.session() as session:
        row = await ctx.service.get_repo(session, repo)
        await ctx.service.abandon_commit(session, row, ref)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/repos/{repo:qualified}/commits/{ref}/diff", response_model=DiffResult)
async def diff(
    repo: RepoName,
    ref: CommitRef,
    ctx: ContextDep,
    from_ref: str | None = Query(None, alias="from", description="Default: the commit's parent"),
    path: str = "/",
) -> DiffResult:
    """Files added, deleted or modified between two commits."""
    async with ctx.db.session(write=False) as session:
        row = await ctx.service.get_repo(session, repo)
        old, new, changes = await ctx.service.diff(session, row, ref, from_ref, path)
        return DiffResult(from_commit=old.id if old else None, to_commit=new.id, changes=changes)


@router.get("/repos/{repo:qualified}/commits/{ref}/history", response_model=list[HistoryEntry])
async def history(
    repo: RepoName,
    ref: CommitRef,
    ctx: ContextDep,
    path: str = Query(..., description="The file or directory whose history to show"),
    limit: int = Query(100, ge=1, le=10_000, description="How many ancestors to look through"),
) -> list[HistoryEntry]:
    """The commits in the ref's ancestry where the path changed."""
    if not path.strip("/"):
        raise InvalidArgument("history needs a path below the root")
    async with ctx.db.session(write=False) as session:
        row = await ctx.service.get_repo(session, repo)
        return await ctx.service.history(session, row, ref, path, limit=limit)


@router.get("/repos/{repo:qualified}/commits/{ref}/subvenance", response_model=list[CommitRefModel])
async def subvenance(repo: RepoName, ref: CommitRef, ctx: ContextDep) -> list[CommitRefModel]:
    """The commits, in any repo, derived from this one (its provenance names it)."""
    async with ctx.db.session(write=False) as session:
        row = await ctx.service.get_repo(session, repo)
        commit = await ctx.service.resolve_commit(session, row, ref)
        return await ctx.service.subvenance(session, commit)
