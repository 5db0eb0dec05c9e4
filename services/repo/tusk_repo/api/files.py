from __future__ import annotations

import asyncio
import functools
import re
import tempfile
from collections.abc import AsyncIterator

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from starlette.requests import ClientDisconnect

from tusk.errors import InvalidArgument, PayloadTooLarge, RangeNotSatisfiable
from tusk.objectstore.chunks import ChunkedFile
from tusk.paths import normalize_path
from tusk_repo import trees
from tusk_repo.api.deps import CommitRef, ContextDep, RepoName
from tusk_repo.batches import BatchLimits, store_archive
from tusk_repo.context import Context
from tusk_repo.schemas import ErrorBody, FileInfo, LinkRequest, Page, PutResult
from tusk_repo.service import file_info, file_info_fields

router = APIRouter(
    tags=["files"],
    responses={
        400: {"model": ErrorBody},
        404: {"model": ErrorBody},
        409: {"model": ErrorBody},
        413: {"model": ErrorBody},
    },
)

_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")
_SPOOL_IN_MEMORY = 32 << 20


async def _check_writable(ctx: Context, repo: str, ref: str) -> None:
    """Fail before reading a possibly huge body when the target cannot take it."""
    async with ctx.db.session(write=False) as session:
        row = await ctx.service.get_repo(session, repo)
        await ctx.service.resolve_open_commit(session, row, ref)


def _declared_length(request: Request, limit: int) -> int | None:
    header = request.headers.get("content-length")
    if header is None:
        return None
    if not header.isdigit():
        raise InvalidArgument("Content-Length must be a number")
    length = int(header)
    if length > limit:
        raise PayloadTooLarge(f"body of {length} bytes is over the limit of {limit} bytes")
    return length


async def _body(request: Request, limit: int) -> AsyncIterator[bytes]:
    """The request body, refusing more than ``limit`` bytes or fewer than declared."""
    declared = _declared_length(request, limit)
    received = 0
    try:
        async for piece in request.stream():
            received += len(piece)
            if received > limit:
                raise PayloadTooLarge(f"body is over the limit of {limit} bytes")
            yield piece
    except ClientDisconnect:
        raise InvalidArgument(
            f"upload cut off after {received} bytes; nothing was written"
        ) from None
    if declared is not None and received != declared:
        raise InvalidArgument(
            f"upload ended after {received} of {declared} bytes; nothing was written"
        )


@router.put(
    "/repos/{repo:qualified}/commits/{ref}/file",
    status_code=status.HTTP_201_CREATED,
    response_model=PutResult,
    openapi_extra={
        "requestBody": {
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
            "required": True,
        }
    },
)
async def put_file(
    repo: RepoName,
    ref: CommitRef,
    request: Request,
    ctx: ContextDep,
    path: str = Query(..., description="Where to put the file, e.g. /data/a.csv"),
) -> PutResult:
    """Stream a file of any size into an open commit (by id, or a branch's open commit).
    The body is split into chunks stored once each; memory use does not grow with its size.
    A file already at the path is replaced."""
    path = normalize_path(path, allow_root=False)
    await _check_writable(ctx, repo, ref)
    stored = await ctx.chunks.write_stream(_body(request, ctx.settings.max_file_bytes))
    async with ctx.db.session() as session:
        row = await ctx.service.get_repo(session, repo)
        commit = await ctx.service.put_files(
            session, row, ref, [(path, stored)], written={stored.hash}
        )
    return PutResult(commit=commit.id, files=[_file(path, stored)])


@router.post(
    "/repos/{repo:qualified}/commits/{ref}/files",
    status_code=status.HTTP_201_CREATED,
    response_model=PutResult,
    openapi_extra={
        "requestBody": {
            "content": {
                "application/octet-stream": {
                    "schema": {
                        "type": "string",
                        "format": "binary",
                        "description": "a tar archive (application/x-tar)",
                    }
                }
            },
            "required": True,
        }
    },
)
async def put_files(
    repo: RepoName,
    ref: CommitRef,
    request: Request,
    ctx: ContextDep,
    prefix: str = Query("/", description="Directory the archive's paths are relative to"),
) -> PutResult:
    """Put many files in one request: the body is a tar archive of regular files. All of them
    are staged in one transaction, or none is."""
    prefix = normalize_path(prefix)
    await _check_writable(ctx, repo, ref)
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as spool:
        async for piece in _body(request, ctx.settings.max_batch_bytes):
            await asyncio.to_thread(spool.write, piece)  # may be on disk past the memory part
        spool.seek(0)
        stored, written = await store_archive(
            spool, prefix, ctx.chunks, functools.partial(_known_files, ctx), _batch_limits(ctx)
        )
    async with ctx.db.session() as session:
        row = await ctx.service.get_repo(session, repo)
        commit = await ctx.service.put_files(session, row, ref, stored, written=written)
    return PutResult(commit=commit.id, files=[_file(p, f) for p, f in stored])


@router.post(
    "/repos/{repo:qualified}/commits/{ref}/links",
    status_code=status.HTTP_201_CREATED,
    response_model=PutResult,
)
async def link_files(
    repo: RepoName, ref: CommitRef, body: LinkRequest, ctx: ContextDep
) -> PutResult:
    """Put files whose contents the service already stores, named by content hash: a copy
    that moves no bytes. Unknown hashes are refused (404) and nothing is staged."""
    async with ctx.db.session() as session:
        row = await ctx.service.get_repo(session, repo)
        commit, linked = await ctx.service.link_files(
            session, row, ref, [(f.path, f.hash) for f in body.files]
        )
    return PutResult(commit=commit.id, files=[_file(p, f) for p, f in linked])


async def _known_files(ctx: Context, digests: set[str]) -> dict[str, ChunkedFile]:
    async with ctx.db.session(write=False) as session:
        return await ctx.service.stored_files(session, digests)


def _batch_limits(ctx: Context) -> BatchLimits:
    return BatchLimits(
        max_member_bytes=ctx.settings.max_batch_member_bytes,
        max_expanded_bytes=ctx.settings.max_batch_expanded_bytes,
        max_files=ctx.settings.max_batch_files,
    )


def _file(path: str, stored: ChunkedFile) -> FileInfo:
    return FileInfo(path=path, type="file", size_bytes=stored.size, hash=stored.hash, file_count=1)


@router.get(
    "/repos/{repo:qualified}/commits/{ref}/file",
    responses={
        200: {"content": {"application/octet-stream": {}}},
        206: {"description": "Partial content"},
        416: {"model": ErrorBody},
    },
)
async def get_file(
    repo: RepoName, ref: CommitRef, request: Request, ctx: ContextDep, path: str = Query(...)
) -> Response:
    """Stream a file's contents; a single ``Range: bytes=…`` header gives part of it."""
    async with ctx.db.session(write=False) as session:
        row = await ctx.service.get_repo(session, repo)
        view = await ctx.service.view(session, row, ref, path)
        _, stored = await ctx.service.open_file(session, view, path)
    start, end = _parse_range(request.headers.get("range"), stored.size)
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Length": str(end - start),
        "ETag": f'"{stored.hash}"',
        "X-Tusk-Commit": view.commit.id,
    }
    code = status.HTTP_200_OK
    if request.headers.get("range"):
        code = status.HTTP_206_PARTIAL_CONTENT
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{stored.size}"
    if end == start:
        return Response(
            b"", status_code=code, headers=headers, media_type="application/octet-stream"
        )
    return StreamingResponse(
        ctx.chunks.read_file(stored, start, end),
        status_code=code,
        headers=headers,
        media_type="application/octet-stream",
    )


def _parse_range(header: str | None, size: int) -> tuple[int, int]:
    if not header:
        return 0, size
    match = _RANGE_RE.fullmatch(header.strip())
    if not match or (not match[1] and not match[2]):
        raise RangeNotSatisfiable(f"unsupported Range {header!r}: use one 'bytes=START-END'")
    if not match[1]:  # the last N bytes
        return max(0, size - int(match[2])), size
    start = int(match[1])
    end = min(int(match[2]) + 1, size) if match[2] else size
    if start >= size or end <= start:
        raise RangeNotSatisfiable(f"range {header!r} is outside the file's {size} bytes")
    return start, end


@router.delete("/repos/{repo:qualified}/commits/{ref}/file", status_code=status.HTTP_204_NO_CONTENT)
async def delete_file(
    repo: RepoName,
    ref: CommitRef,
    ctx: ContextDep,
    path: str = Query(..., description="File or directory"),
) -> Response:
    """Delete a file, or a directory with everything in it, from an open commit."""
    async with ctx.db.session() as session:
        row = await ctx.service.get_repo(session, repo)
        await ctx.service.delete_path(session, row, ref, path)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/repos/{repo:qualified}/commits/{ref}/stat", response_model=FileInfo)
async def stat(repo: RepoName, ref: CommitRef, ctx: ContextDep, path: str = "/") -> FileInfo:
    async with ctx.db.session(write=False) as session:
        row = await ctx.service.get_repo(session, repo)
        view = await ctx.service.view(session, row, ref, path)
        return await ctx.service.stat(session, view, path)


@router.get("/repos/{repo:qualified}/commits/{ref}/list", response_model=Page[FileInfo])
async def list_files(
    repo: RepoName,
    ref: CommitRef,
    ctx: ContextDep,
    path: str = "/",
    limit: int = Query(10_000, ge=1, le=100_000),
    cursor: str | None = Query(None, description="Continue after this entry name"),
) -> Page[FileInfo]:
    """The entries of a directory, by name."""
    path = normalize_path(path)
    async with ctx.db.session(write=False) as session:
        row = await ctx.service.get_repo(session, repo)
        view = await ctx.service.view(session, row, ref, path)
        entries = await trees.list_dir(view.load, view.root, path)
    if cursor is not None:
        entries = [(p, e) for p, e in entries if e.name > cursor]
    page = entries[:limit]
    more = len(entries) > limit
    return Page[FileInfo].model_validate(
        {
            "items": [file_info_fields(p, e) for p, e in page],
            "next_cursor": page[-1][1].name if more and page else None,
        }
    )


@router.get("/repos/{repo:qualified}/commits/{ref}/glob", response_model=list[FileInfo])
async def glob(
    repo: RepoName,
    ref: CommitRef,
    ctx: ContextDep,
    pattern: str = Query(..., description="e.g. /*, /data/*.csv, /**/*.json"),
) -> list[FileInfo]:
    """Files and directories matching a glob pattern."""
    async with ctx.db.session(write=False) as session:
        row = await ctx.service.get_repo(session, repo)
        view = await ctx.service.view(session, row, ref)
        matches = await trees.glob(view.load, view.root, pattern)
    return [file_info(p, e) for p, e in matches]
