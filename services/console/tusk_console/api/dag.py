from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tusk_console.api.deps import BackendsDep
from tusk_console.api.render import page
from tusk_console.domain.graph import dag

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
async def dag_page(request: Request, backends: BackendsDep) -> HTMLResponse:
    """Repos and pipelines as a graph; pipelines coloured by their last job, live."""
    repos, pipelines = await asyncio.gather(
        backends.repo.list_repos(), backends.trigger.list_pipelines()
    )
    graph = dag(repos, pipelines)
    return page(
        request, "dag.html", graph=graph.as_json(), pipelines=pipelines,
        inputs=[n for n in graph.nodes if n.kind == "repo"],
    )
