"""``GET /v1/events``: the bus's records as a Server-Sent Events stream.

It lets ``tusk events tail`` watch a bus it cannot reach itself: the in-process bus of
``tusk up``. It reads as a lone consumer (no group, nothing committed), so a watcher never
takes events away from the services. It is an ordinary API route, behind the same token check
as every other.

Each record is one SSE message (``event: record``) whose data is JSON: topic, partition,
offset, key, value and headers, bytes as text (undecodable bytes escaped, so nothing is lost).
A comment line is sent while nothing happens, so that proxies and the client see the stream is
alive.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from tusk.errors import InvalidArgument
from tusk.events.bus import EventBus
from tusk.events.types import DLQ_TOPIC, TOPICS
from tusk.events.wire import record_to_json

ALL_TOPICS = (*TOPICS, DLQ_TOPIC)
MEDIA_TYPE = "text/event-stream"
def event_feed_router(bus: EventBus) -> APIRouter:
    router = APIRouter(tags=["events"])

    @router.get("/events", response_class=StreamingResponse)
    async def events(
        request: Request,
        topic: Annotated[
            list[str] | None, Query(description="Topics to read; default: all of tusk's.")
        ] = None,
        from_beginning: Annotated[
            bool, Query(description="Start at the oldest record, not at the newest.")
        ] = False,
    ) -> StreamingResponse:
        """Records as they are published, as Server-Sent Events, until the client leaves."""
        topics = topic or list(ALL_TOPICS)
        unknown = sorted(set(topics) - set(ALL_TOPICS))
        if unknown:
            raise InvalidArgument(
                f"unknown topic(s) {', '.join(unknown)}: choose from {', '.join(ALL_TOPICS)}"
            )
        subscription = await bus.subscribe(topics, group=None, from_beginning=from_beginning)

        async def stream() -> AsyncIterator[str]:
            try:
                yield f": reading {', '.join(topics)}\n\n"
                while not await request.is_disconnected():
                    records = await subscription.fetch(max_records=100, max_wait=1.0)
                    for record in records:
                        yield f"event: record\ndata: {json.dumps(record_to_json(record))}\n\n"
                    if not records:
                        yield ": idle\n\n"
            finally:
                await subscription.close()

        return StreamingResponse(
            stream(), media_type=MEDIA_TYPE, headers={"Cache-Control": "no-store"}
        )

    return router
