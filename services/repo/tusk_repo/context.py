"""The long-lived clients of one repo service process, built once in the app's lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass

import structlog

from tusk.db import Database, migrate
from tusk.events.bus import EventBus, open_event_bus
from tusk.events.outbox import OutboxWriter
from tusk.events.relay import OutboxRelay
from tusk.objectstore import ChunkStore, ObjectStore, open_object_store
from tusk_repo.config import RepoSettings
from tusk_repo.service import RepoService
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
            context = Context(
                settings=settings,
                db=db,
                objects=objects,
                chunks=ChunkStore(
                    objects,
                    chunk_size=settings.chunk_size,
                    max_in_flight=settings.upload_concurrency,
                ),
                service=RepoService(
                    TreeStore(settings.tree_cache_entries),
                    OutboxWriter(outbox, "tusk/repo", on_commit=relay.wake),
                ),
                bus=event_bus,
                relay=relay,
            )
            if settings.outbox_relay:
                relay.start()
            try:
                yield context
            finally:
                await relay.stop()
    finally:
        await db.dispose()
