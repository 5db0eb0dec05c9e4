from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, StreamingResponse

from tusk.errors import InvalidArgument
from tusk_console.api.deps import BackendsDep, ContextDep
from tusk_console.api.render import page
from tusk_console.backends import Backends
from tusk_console.domain.previews import csv_page, media_type, preview_kind, text_preview

router = APIRouter()

PathQuery = Query("/", max_length=4096, description="A path in the commit's tree")


@router.get("/repos/{repo:qualified}", response_class=HTMLResponse)
async def repo_page(
    request: Request,
    repo: str,
    backends: BackendsDep,
    ctx: ContextDep,
    branch: str | None = Query(None, max_length=200),
    cursor: str | None = Query(None, max_length=100),
) -> HTMLResponse:
    """Branches and the commit log, newest first."""
    info, branches = await asyncio.gather(
        backends.repo.inspect_repo(repo), backends.repo.list_branches(repo)
    )
    commits = await backends.repo.list_commits_page(
        repo, branch=branch, limit=ctx.settings.page_size, cursor=cursor
    )
    return page(
        request, "repo.html", repo=info, branches=branches, commits=commits, branch=branch,
    )


@router.get("/repos/{repo:qualified}/files/{ref}", response_class=HTMLResponse)
async def files_page(
    request: Request,
    repo: str,
    ref: str,
    backends: BackendsDep,
    ctx: ContextDep,
    path: str = PathQuery,
    cursor: str | None = Query(None, max_length=1000),
    page_number: int = Query(0, ge=0, le=1_000_000, alias="page"),
) -> HTMLResponse:
    """A directory, one page of entries at a time; or a file's preview."""
    commit = await backends.repo.inspect_commit(repo, ref)
    stat = await backends.repo.stat(repo, commit.id, path)
    crumbs = _crumbs(stat.path)
    values: dict[str, Any] = {
        "repo": repo, "ref": ref, "commit": commit, "stat": stat, "crumbs": crumbs,
    }
    if stat.type == "dir":
        listing = await backends.repo.list_page(
            repo, commit.id, stat.path, limit=ctx.settings.page_size, cursor=cursor
        )
        return page(request, "files.html", listing=listing, cursor=cursor, **values)
    kind = preview_kind(stat.path)
    chunks = _read(backends, repo, commit.id, stat.path)
    if kind == "csv":
        delimiter = "\t" if stat.path.lower().endswith(".tsv") else ","
        table = await csv_page(chunks, page_number, ctx.settings.page_size, delimiter)
        return page(request, "file.html", kind=kind, table=table, **values)
    if kind in ("text", "json"):
        text = await text_preview(
            chunks, ctx.settings.preview_bytes, pretty_json=kind == "json"
        )
        return page(request, "file.html", kind="binary" if text.binary else kind, text=text,
                    **values)
    return page(request, "file.html", kind=kind, **values)


@router.get("/repos/{repo:qualified}/raw/{ref}")
async def raw_file(
    repo: str, ref: str, backends: BackendsDep, path: str = PathQuery, download: bool = False
) -> StreamingResponse:
    """The file's bytes, streamed as they come from the repo service."""
    stat = await backends.repo.stat(repo, ref, path)
    if stat.type != "file":
        raise InvalidArgument(f"{path} in {repo}@{ref} is a directory, not a file")
    chunks = _read(backends, repo, ref, stat.path)
    first = await anext(chunks, b"")  # errors surface now, as a status, not mid-stream

    async def body() -> AsyncIterator[bytes]:
        yield first
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                yield chunk

    name = stat.path.rsplit("/", 1)[-1]
    headers = {
        "Content-Length": str(stat.size_bytes),
        "X-Content-Type-Options": "nosniff",
        # Stored SVGs could carry scripts: never let them run as the console.
        "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'",
        "Content-Disposition": f"{'attachment' if download else 'inline'}; filename=\"{name}\"",
    }
    return StreamingResponse(body(), media_type=media_type(stat.path), headers=headers)


@router.get("/repos/{repo:qualified}/diff", response_class=HTMLResponse)
async def diff_page(
    request: Request,
    repo: str,
    backends: BackendsDep,
    to: str = Query("master", max_length=200, description="The newer commit or branch"),
    from_: str | None = Query(None, alias="from", max_length=200),
) -> HTMLResponse:
    """Files added, deleted or modified between two commits (default: ``to``'s parent)."""
    target = await backends.repo.inspect_commit(repo, to)
    source = await backends.repo.inspect_commit(repo, from_) if from_ else None
    diff = await backends.repo.diff(repo, target.id, source.id if source else None)
    return page(request, "diff.html", repo=repo, to=target, source=source, diff=diff,
                to_ref=to, from_ref=from_ or "")


def _read(backends: Backends, repo: str, ref: str, path: str) -> AsyncGenerator[bytes, None]:
    return backends.repo.get_file(repo, ref, path)


def _crumbs(path: str) -> list[tuple[str, str]]:
    parts = [p for p in path.split("/") if p]
    return [("/" + "/".join(parts[: i + 1]), part) for i, part in enumerate(parts)]
