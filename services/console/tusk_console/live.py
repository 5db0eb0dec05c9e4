"""The bus, fanned out to the browsers that follow it (server-sent events).

One lone reader (no consumer group: the console keeps no offsets and needs no history) reads
the commit and job topics from their end; each open page gets its own bounded queue. A page
too slow to keep up loses events rather than holding the others back, and is told so, so
that it reloads what it shows.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import structlog

from tusk.errors import InvalidArgument, Unavailable
from tusk.events.bus import EventBus, Subscription, decode
from tusk.events.types import COMMITS_TOPIC, JOBS_TOPIC, REPOS_TOPIC

log = structlog.get_logger()

QUEUE_SIZE = 1000

# Job event type -> the job state it means for the DAG's colours.
JOB_STATES = {
    "io.tusk.job.created.v1": "created",
    "io.tusk.job.created.v2": "created",
    "io.tusk.job.started.v1": "running",
    "io.tusk.job.progress.v1": "running",
    "io.tusk.job.succeeded.v1": "success",
}


@dataclass(frozen=True)
class LiveEvent:
    """What a page needs of an event: which kind, about what, and the state it implies."""

    id: str
    type: str
    topic: str
    data: dict[str, Any]

    @property
    def kind(self) -> str:
        """``job.started``, ``commit.finished``, …: the type without prefix and version."""
        return ".".join(self.type.split(".")[2:4])

    def as_json(self) -> dict[str, Any]:
        data = self.data
        body: dict[str, Any] = {"id": self.id, "kind": self.kind}
        for key in ("repo", "commit", "branch", "pipeline", "job", "global_id", "counts"):
            if key in data:
                body[key] = data[key]
        if self.type == "io.tusk.job.failed.v1":
            body["state"] = "killed" if data.get("killed") else "failure"
            body["reason"] = data.get("reason")
        elif self.type in JOB_STATES:
            body["state"] = JOB_STATES[self.type]
        return body


class LiveFeed:
    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self._queues: set[asyncio.Queue[LiveEvent | None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._behind: set[int] = set()

    async def start(self) -> None:
        subscription = await self._bus.subscribe(
            (REPOS_TOPIC, COMMITS_TOPIC, JOBS_TOPIC), group=None, from_beginning=False
        )
        self._task = asyncio.create_task(self._run(subscription), name="console-live-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for queue in list(self._queues):
            _offer(queue, None)

    @property
    def followers(self) -> int:
        return len(self._queues)

    @contextlib.asynccontextmanager
    async def follow(self) -> AsyncIterator[asyncio.Queue[LiveEvent | None]]:
        """A queue of the events from now on; ``None`` in it means events were lost."""
        queue: asyncio.Queue[LiveEvent | None] = asyncio.Queue(QUEUE_SIZE)
        self._queues.add(queue)
        try:
            yield queue
        finally:
            self._queues.discard(queue)

    async def _run(self, subscription: Subscription) -> None:
        try:
            while True:
                try:
                    records = await subscription.fetch(max_records=500, max_wait=1.0)
                except Unavailable as e:
                    log.warning("console cannot read the bus; retrying", error=e.message)
                    await asyncio.sleep(1.0)  # a broker down: back off before asking again
                    continue
                for record in records:
                    try:
                        envelope = decode(record)
                    except InvalidArgument:
                        continue  # the services' consumers dead-letter it; pages skip it
                    event = LiveEvent(
                        envelope.id, envelope.type, record.topic, dict(envelope.data)
                    )
                    for queue in list(self._queues):
                        if _offer(queue, event):
                            self._behind.discard(id(queue))
                        elif id(queue) not in self._behind:  # say so once per episode
                            self._behind.add(id(queue))
                            log.info("a console page fell behind; it reloads")
                # A bus that has records ready answers without waiting: let the pages' streams
                # drain their queues between batches, or a burst overflows every one of them.
                await asyncio.sleep(0)
        finally:
            await subscription.close()


def _offer(queue: asyncio.Queue[LiveEvent | None], event: LiveEvent | None) -> bool:
    try:
        queue.put_nowait(event)
    except asyncio.QueueFull:
        with contextlib.suppress(asyncio.QueueEmpty):
            queue.get_nowait()
        with contextlib.suppress(asyncio.QueueFull):
            queue.put_nowait(None)
        return False
    return True
