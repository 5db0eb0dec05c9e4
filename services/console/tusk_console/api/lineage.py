from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tusk_console.api.deps import BackendsDep
from tusk_console.api.render import page
from tusk_console.domain.graph import lineage

router = APIRouter()


@router.get("/lineage/{repo:qualified}/{ref}", response_class=HTMLResponse)
async def lineage_page(
    request: Request, repo: str, ref: str, backends: BackendsDep
) -> HTMLResponse:
    """A commit's provenance up to raw data and everything derived from it, down."""
    start = await backends.repo.inspect_commit(repo, ref)
    graph, truncated = await lineage(backends.repo, start)
    return page(request, "lineage.html", commit=start, graph=graph.as_json(),
                nodes=graph.nodes, truncated=truncated)
