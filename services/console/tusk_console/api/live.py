"""``GET /events``: the bus as server-sent events, for the pages that follow it live."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from tusk_console.api.deps import BackendsDep, ContextDep, TokenDep

router = APIRouter()

KEEPALIVE_SECONDS = 15.0


@router.get("/events")
async def events(ctx: ContextDep, token: TokenDep, backends: BackendsDep) -> StreamingResponse:
    """Commit and job events as they happen (``text/event-stream``): one JSON object per
    event with its kind, repo or pipeline, job and the job state it implies."""
    if token is not None:
        await backends.repo.list_repos()  # the token is refused here, before the stream opens

    async def stream() -> AsyncIterator[bytes]:
        yield b"retry: 2000\n: following the bus\n\n"
        async with ctx.live.follow() as queue:
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield b": keep-alive\n\n"  # proxies drop silent connections
                    continue
                if event is None:  # this page fell behind: it reloads what it shows
                    yield b"event: lost\ndata: {}\n\n"
                    continue
                body = json.dumps(event.as_json(), separators=(",", ":"))
                yield f"id: {event.id}\ndata: {body}\n\n".encode()

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
