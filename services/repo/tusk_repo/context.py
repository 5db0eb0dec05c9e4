"""The long-lived clients of one repo service process, built once in the app's lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import structlog

from tusk.db import Database, migrate
from tusk.events.outbox import OutboxWriter
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


@asynccontextmanager
async def build_context(settings: RepoSettings) -> AsyncIterator[Context]:
    url = settings.resolved_database_url
    if settings.migrate_on_start:
        await migrate(url)
    db = Database.from_url(url)
    try:
        async with open_object_store(settings) as objects:
            yield Context(
                settings=settings,
                db=db,
                objects=objects,
                chunks=ChunkStore(
                    objects, chunk_size=settings.chunk_size,
                    max_in_flight=settings.upload_concurrency,
                ),
                service=RepoService(
                    TreeStore(settings.tree_cache_entries), OutboxWriter(outbox, "tusk/repo")
                ),
            )
    finally:
        await db.dispose()
