"""Routes for a repo's lifecycle: garbage collection, tags, merges, protection, retention,
history edits and whole-directory downloads."""

from __future__ import annotations

from datetime import timedelta
from pathlib import PurePosixPath

from fastapi import APIRouter, Depends, Query, status
from fastapi.responses import StreamingResponse
from pydantic import Field

from tusk.auth.http import require_admin
from tusk.errors import NotFound
from tusk.paths import normalize_path
from tusk_repo import trees
from tusk_repo.api.deps import BranchName, CommitRef, ContextDep, RepoName
from tusk_repo.archive import Member, tar_stream
from tusk_repo.context import Context
from tusk_repo.schemas import (
    BranchInfo,
    DroppedCommits,
    ErrorBody,
    GcReport,
    MergeInfo,
    MergeRequest,
    Model,
    RepoInfo,
    RetentionRules,
    SquashRequest,
    TagCreate,
    TagInfo,
)

router = APIRouter(
    tags=["lifecycle"],
    responses={
        400: {"model": ErrorBody},
        403: {"model": ErrorBody},
        404: {"model": ErrorBody},
        409: {"model": ErrorBody},
    },
)


_TEN_YEARS = 10 * 365 * 24 * 3600.0  # a grace longer than this is a mistake


@router.post("/gc", response_model=GcReport, dependencies=[Depends(require_admin)])
async def collect_garbage(
    ctx: ContextDep,
    dry_run: bool = Query(False, description="Count what would be freed; delete nothing"),
    grace_seconds: float | None = Query(
        None,
        ge=0,
        le=_TEN_YEARS,
        description="Spare unreferenced chunks younger than this (default: the service's "
        "TUSK_REPO_GC_GRACE_SECONDS); uploads in flight rely on them",
    ),
    compact_below: float | None = Query(
        None,
        ge=0,
        le=1,
        description="Rewrite packs of small files used less than this fraction (default: the "
        "service's TUSK_REPO_GC_COMPACT_BELOW; 0: no compaction)",
    ),
) -> GcReport:
    """Delete what no commit reaches any more (after repos, branches or commits were deleted
    or squashed), applying each repo's retention rules first, and compact packs of small files
    that are mostly unused."""
    grace = None if grace_seconds is None else timedelta(seconds=grace_seconds)
    return await ctx.collector.run(dry_run=dry_run, grace=grace, compact_below=compact_below)


@router.post(
    "/repos/{repo:qualified}/tags", status_code=status.HTTP_201_CREATED, response_model=TagInfo
)
async def create_tag(repo: RepoName, body: TagCreate, ctx: ContextDep) -> TagInfo:
    """Name a finished commit; a tag never moves and works wherever a ref does
    (``repo@v1:/path``)."""
    async with ctx.db.session() as session:
        row = await ctx.service.get_repo(session, repo)
        return await ctx.lifecycle.create_tag(session, row, body.name, body.ref)


@router.get("/repos/{repo:qualified}/tags", response_model=list[TagInfo])
async def list_tags(repo: RepoName, ctx: ContextDep) -> list[TagInfo]:
    async with ctx.db.session(write=False) as session:
        row = await ctx.service.get_repo(session, repo)
        return await ctx.lifecycle.list_tags(session, row)


@router.post("/repos/{repo:qualified}/merge", response_model=MergeInfo)
async def merge(repo: RepoName, body: MergeRequest, ctx: ContextDep) -> MergeInfo:
    """Merge a ref into a branch: a fast-forward when the branch's head is an ancestor of the
    source, else a three-way merge by content hash into a commit with two parents. Paths both
    sides changed differently are conflicts (409, listed path by path, nothing written)
    unless a strategy settles them."""
    async with ctx.db.session() as session:
        row = await ctx.service.get_repo(session, repo)
        return await ctx.lifecycle.merge(session, row, body)


class Protection(Model):
    protected: bool = True


@router.put("/repos/{repo:qualified}/branches/{branch}/protection", response_model=BranchInfo)
async def protect_branch(
    repo: RepoName, branch: BranchName, body: Protection, ctx: ContextDep
) -> BranchInfo:
    """Protect a branch (it then changes only by merges) or lift its protection."""
    async with ctx.db.session() as session:
        row = await ctx.service.get_repo(session, repo)
        updated = await ctx.lifecycle.protect_branch(session, row, branch, body.protected)
        return ctx.service.branch_info(row, updated)


@router.put("/repos/{repo:qualified}/retention", response_model=RepoInfo)
async def set_retention(repo: RepoName, body: RetentionRules, ctx: ContextDep) -> RepoInfo:
    """Retention of commits on the repo's branches other than master, applied by garbage
    collection: a commit older than ``keep_days`` and not among its branch's ``keep_last``
    newest is dropped (heads, tagged commits and inputs of other commits are kept)."""
    async with ctx.db.session() as session:
        row = await ctx.service.get_repo(session, repo)
        await ctx.lifecycle.set_retention(session, row, body)
        return await ctx.service.repo_info(session, row)


class Owner(Model):
    pipeline: str | None = Field(description="The pipeline whose output this repo is, or null")


@router.put("/repos/{repo:qualified}/owner", response_model=RepoInfo)
async def set_owner(repo: RepoName, body: Owner, ctx: ContextDep) -> RepoInfo:
    """Record which pipeline owns the repo (its output): only that pipeline's jobs write to it."""
    async with ctx.db.session() as session:
        row = await ctx.service.get_repo(session, repo)
        await ctx.lifecycle.set_owner(session, row, body.pipeline)
        return await ctx.service.repo_info(session, row)


@router.post("/repos/{repo:qualified}/commits/{ref}/delete", response_model=DroppedCommits)
async def delete_commit(
    repo: RepoName,
    ref: CommitRef,
    ctx: ContextDep,
    cascade: bool = Query(False, description="Also delete every commit derived from it"),
) -> DroppedCommits:
    """Delete a finished commit: its children take its parent, a branch it heads moves to its
    parent. Refused (409, listing them) while other commits derive from it, unless cascade."""
    async with ctx.db.session() as session:
        row = await ctx.service.get_repo(session, repo)
        return await ctx.lifecycle.delete_commit(session, row, ref, cascade=cascade)


@router.post("/repos/{repo:qualified}/squash", response_model=DroppedCommits)
async def squash(repo: RepoName, body: SquashRequest, ctx: ContextDep) -> DroppedCommits:
    """Squash OLDEST..NEWEST of one branch's history into NEWEST (it keeps its id and files
    and takes OLDEST's parent); the others are deleted, as by delete."""
    async with ctx.db.session() as session:
        row = await ctx.service.get_repo(session, repo)
        return await ctx.lifecycle.squash(
            session, row, body.oldest, body.newest, cascade=body.cascade
        )


class TarRequest(Model):
    path: str = "/"
    skip: dict[str, str] = Field(
        default_factory=dict,
        description="Members to leave out when their content hash matches: relative path → "
        "BLAKE3 hash (a resumed download's complete files)",
    )
    hashes: bool = Field(
        default=True,
        description="Give each member's content hash in a PAX record TUSK.hash (tar programs "
        "other than tusk's warn about records they do not know)",
    )


@router.get(
    "/repos/{repo:qualified}/commits/{ref}/tar",
    responses={200: {"content": {"application/x-tar": {}}}},
)
async def get_tar(
    repo: RepoName, ref: CommitRef, ctx: ContextDep, path: str = Query("/")
) -> StreamingResponse:
    """Every file at or under a path as one tar stream, paths relative to it:
    ``curl … | tar x``."""
    return await _tar(ctx, repo, ref, TarRequest(path=path, hashes=False))


@router.post(
    "/repos/{repo:qualified}/commits/{ref}/tar",
    responses={200: {"content": {"application/x-tar": {}}}},
)
async def post_tar(
    repo: RepoName, ref: CommitRef, body: TarRequest, ctx: ContextDep
) -> StreamingResponse:
    """As GET, with each member's content hash in a PAX record, leaving out the members whose
    paths and hashes ``skip`` lists."""
    return await _tar(ctx, repo, ref, body)


async def _tar(ctx: Context, repo: str, ref: str, request: TarRequest) -> StreamingResponse:
    path = normalize_path(request.path)
    async with ctx.db.session(write=False) as session:
        row = await ctx.service.get_repo(session, repo)
        view = await ctx.service.view(session, row, ref, path)
        entry = await trees.lookup(view.load, view.root, path)
        if entry is None:
            raise NotFound(f"path {path} not found in commit {view.commit.id}")
        if entry.kind == trees.FILE:
            found = [(PurePosixPath(path).name, entry.hash)]
        else:
            prefix = len(path.rstrip("/")) + 1
            found = [
                (p[prefix:], e.hash) async for p, e in trees.walk_files(view.load, view.root, path)
            ]
        wanted = [(name, digest) for name, digest in found if request.skip.get(name) != digest]
        files = await ctx.service.stored_files(session, {digest for _, digest in wanted})
    members = [Member(name, files[digest]) for name, digest in wanted]
    moment = view.commit.finished_at or view.commit.started_at
    return StreamingResponse(
        tar_stream(ctx.chunks, members, moment.timestamp(), hashes=request.hashes),
        media_type="application/x-tar",
        headers={
            "X-Tusk-Commit": view.commit.id,
            "X-Tusk-Files": str(len(members)),
            "X-Tusk-Skipped": str(len(found) - len(members)),
        },
    )
