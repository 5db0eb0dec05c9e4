"""The long-lived parts of one trigger process, built once in the app's lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import structlog

from tusk.client.repo import RepoClient
from tusk.db import Database, migrate
from tusk.events.bus import EventBus
from tusk.events.consumer import EventConsumer
from tusk.events.factory import open_event_bus
from tusk.events.outbox import OutboxWriter
from tusk.events.relay import OutboxRelay
from tusk_trigger.background import run_cron
from tusk_trigger.config import TriggerSettings
from tusk_trigger.events import GROUP, TOPICS, TYPES, make_handler, make_prepare
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
        service = TriggerService(repos, OutboxWriter(outbox, "tusk/trigger", on_commit=relay.wake))
        consumer = EventConsumer(
            bus,
            db,
            processed_events,
            group=GROUP,
            topics=TOPICS,
            types=TYPES,
            handler=make_handler(service),
            prepare=make_prepare(service, db),
        )
        relay.start()
        stack.push_async_callback(relay.stop)
        consumer.start()
        stack.push_async_callback(consumer.stop)
        ticker = asyncio.create_task(run_cron(service, db, repos, settings.cron_interval))
        stack.push_async_callback(_cancel, ticker)
        yield Context(settings=settings, db=db, repos=repos, service=service, relay=relay)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
