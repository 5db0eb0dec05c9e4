"""What the inference service consumes: ``commit.finished`` and ``branch.moved`` on the model
repos' branches.

Every replica must see every event (each holds its own sessions), so it reads as a lone
reader — no consumer group, nothing committed — starting at the end of the log: what happened
before start-up is covered by loading the branch heads, which happens after subscribing so
that nothing falls in between.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from tusk.errors import InvalidArgument, Unavailable
from tusk.events.bus import EventBus, Record, Subscription, decode
from tusk.events.types import COMMITS_TOPIC, BranchMoved, CommitFinished
from tusk_inference.service import ModelService

log = structlog.get_logger()

TOPICS = (COMMITS_TOPIC,)
WANTED = frozenset({CommitFinished.type, BranchMoved.type})
RETRY_MAX_SECONDS = 30.0


class CommitWatcher:
    def __init__(self, bus: EventBus, service: ModelService) -> None:
        self.bus = bus
        self.service = service
        self._task: asyncio.Task[None] | None = None
        self._subscription: Subscription | None = None

    async def start(self) -> None:
        """Subscribe (a broker that is down is retried in the background), then read."""
        try:
            self._subscription = await self._subscribe()
        except Unavailable as e:
            log.warning("cannot read events yet; retrying", error=e.message)
        self._task = asyncio.create_task(self._run(), name="inference events")

    async def _subscribe(self) -> Subscription:
        return await self.bus.subscribe(TOPICS, group=None, from_beginning=False)

    async def _run(self) -> None:
        delay = 0.5
        while True:
            try:
                if self._subscription is None:
                    self._subscription = await self._subscribe()
                    log.info("reading events")
                    # Whatever finished while we could not read: the heads have it.
                    for slot in self.service.registry.slots.values():
                        await self.service.sync_head(slot)
                records = await self._subscription.fetch(max_records=100, max_wait=1.0)
                delay = 0.5
            except Unavailable as e:
                log.warning("cannot read events; retrying", error=e.message, retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)
                continue
            except Exception:  # a bug must not stop the models from following their branches
                log.exception("reading events failed; retrying")
                await asyncio.sleep(delay)
                continue
            for record in records:
                self.handle(record)

    def handle(self, record: Record) -> None:
        try:
            envelope = decode(record)
            if envelope.type not in WANTED:
                return
            event = envelope.payload()
        except InvalidArgument as e:
            log.warning("skipping an unreadable event", error=e.message, offset=record.offset)
            return
        if isinstance(event, CommitFinished):
            self.service.on_commit_finished(event)
        elif isinstance(event, BranchMoved):
            self.service.on_branch_moved(event)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._subscription is not None:
            await self._subscription.close()
