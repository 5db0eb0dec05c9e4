"""The long-lived clients of one repo service process, built once in the app's lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass
from datetime import timedelta

import structlog

from tusk.db import Database, migrate
from tusk.events.bus import EventBus
from tusk.events.factory import open_event_bus
from tusk.events.outbox import OutboxWriter
from tusk.events.relay import OutboxRelay
from tusk.objectstore import ChunkStore, ObjectStore, open_object_store
from tusk_repo.config import RepoSettings
from tusk_repo.gc import GarbageCollector
from tusk_repo.lifecycle import LifecycleService
from tusk_repo.service import RepoService
from tusk_repo.staging import StagedCleaner
from tusk_repo.store import TreeStore
from tusk_repo.tables import outbox

log = structlog.get_logger()


@dataclass(frozen=True)
class Context:
    settings: RepoSettings
    db: Database
    objects: ObjectStore
    chunks: ChunkStore
    service: RepoService
    bus: EventBus
    relay: OutboxRelay
    lifecycle: LifecycleService
    collector: GarbageCollector
    staged: StagedCleaner


@asynccontextmanager
async def build_context(
    settings: RepoSettings, *, bus: EventBus | None = None
) -> AsyncIterator[Context]:
    """``bus``: one shared by the services of this process (the embedded mode's ``MemoryBus``,
    closed by its owner); by default its own, on Kafka when ``TUSK_KAFKA_BOOTSTRAP`` is set."""
    url = settings.resolved_database_url
    if settings.migrate_on_start:
        await migrate(url)
    db = Database.from_url(url)
    try:
        own_bus: AbstractAsyncContextManager[EventBus] = (
            nullcontext(bus) if bus is not None else open_event_bus(settings)
        )
        async with open_object_store(settings) as objects, own_bus as event_bus:
            relay = OutboxRelay(
                db, outbox, event_bus, max_record_bytes=settings.max_event_bytes
            )
            writer = OutboxWriter(outbox, "tusk/repo", on_commit=relay.wake)
            grace = timedelta(seconds=settings.gc_grace_seconds)
            service = RepoService(TreeStore(settings.tree_cache_entries), writer)
            chunks = ChunkStore(
                objects,
                chunk_size=settings.chunk_size,
                max_in_flight=settings.upload_concurrency,
                reuse_within=grace / 2,
            )
            context = Context(
                settings=settings,
                db=db,
                objects=objects,
                chunks=chunks,
                service=service,
                bus=event_bus,
                relay=relay,
                lifecycle=LifecycleService(service, writer, db),
                collector=GarbageCollector(
                    db,
                    objects,
                    writer,
                    grace,
                    chunks=chunks,
                    compact_below=settings.gc_compact_below,
                ),
                staged=StagedCleaner(db),
            )
            context.staged.sweep_later()  # rows a crash left between a finish and its clearing
            if settings.outbox_relay:
                relay.start()
            periodic = (
                asyncio.create_task(
                    context.collector.run_periodically(settings.gc_interval_seconds),
                    name="repo-gc",
                )
                if settings.gc_interval_seconds > 0
                else None
            )
            try:
                yield context
            finally:
                if periodic is not None:
                    periodic.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await periodic
                await context.staged.close()
                await relay.stop()
    finally:
        await db.dispose()
