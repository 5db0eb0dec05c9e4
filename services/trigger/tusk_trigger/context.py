"""The long-lived parts of one trigger process, built once in the app's lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from tusk.client.repo import RepoClient
from tusk.db import Database, migrate
from tusk.errors import TuskError
from tusk.events.bus import EventBus
from tusk.events.consumer import EventConsumer
from tusk.events.factory import open_event_bus
from tusk.events.outbox import OutboxWriter
from tusk.events.relay import OutboxRelay
from tusk_trigger.config import TriggerSettings
from tusk_trigger.cron import commit_tick
from tusk_trigger.events import GROUP, TOPICS, TYPES, make_handler
from tusk_trigger.service import TriggerService
from tusk_trigger.tables import outbox, processed_events

log = structlog.get_logger()


@dataclass(frozen=True)
class Context:
    settings: TriggerSettings
    db: Database
    repos: RepoClient
    service: TriggerService
    relay: OutboxRelay


@asynccontextmanager
async def build_context(
    settings: TriggerSettings, bus: EventBus | None = None, repos: RepoClient | None = None
) -> AsyncIterator[Context]:
    """Everything the trigger needs; ``bus`` lets an embedded stack share one MemoryBus, and
    ``repos`` lets tests reach an in-process repo service."""
    url = settings.resolved_database_url
    if settings.migrate_on_start:
        await migrate(url)
    async with AsyncExitStack() as stack:
        db = Database.from_url(url)
        stack.push_async_callback(db.dispose)
        if bus is None:
            bus = await stack.enter_async_context(open_event_bus(settings))
        if repos is None:
            repos = await stack.enter_async_context(
                RepoClient(settings.repo_url, token=settings.token)
            )
        relay = OutboxRelay(db, outbox, bus, max_record_bytes=settings.max_event_bytes)
        service = TriggerService(
            db, repos, OutboxWriter(outbox, "tusk/trigger", on_commit=relay.wake)
        )
        consumer = EventConsumer(
            bus,
            db,
            processed_events,
            group=GROUP,
            topics=TOPICS,
            types=TYPES,
            handler=make_handler(service),
        )
        relay.start()
        stack.push_async_callback(relay.stop)
        consumer.start()
        stack.push_async_callback(consumer.stop)
        ticker = asyncio.create_task(run_cron(service, repos, settings.cron_interval))
        stack.push_async_callback(_cancel, ticker)
        yield Context(settings=settings, db=db, repos=repos, service=service, relay=relay)


async def run_cron(service: TriggerService, repos: RepoClient, interval: float) -> None:
    """Commit each due tick; a failed tick is logged and tried again on the next look."""
    while True:
        now = datetime.now(UTC)
        try:
            for row in await service.due_ticks(now):
                if await service.claim_tick(row, now):
                    commit = await commit_tick(
                        repos, row.repo, row.next_tick_at, overwrite=row.overwrite
                    )
                    log.info(
                        "cron tick",
                        pipeline=row.pipeline,
                        input=row.input_name,
                        repo=row.repo,
                        commit=commit,
                    )
        except TuskError as e:
            log.warning("cron tick failed", error=e.message)
        await asyncio.sleep(interval)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
