"""The transactional outbox: an event row is written in the same SQL transaction as the change
it describes, so there is no change without its event and no event without its change. A
relay publishes the rows in ``id`` order and marks them sent.

Each service owns its own outbox table (``<service>_outbox``), made by :func:`outbox_table`.
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, Index, Integer, MetaData, String, Table
from sqlalchemy.ext.asyncio import AsyncSession

from tusk.db import UTCDateTime

from tusk.events.envelope import Envelope, EventData


def outbox_table(prefix: str, metadata: MetaData) -> Table:
    return Table(
        f"{prefix}_outbox",
        metadata,
        # BIGINT on PostgreSQL, INTEGER (the rowid alias) on SQLite, so both autoincrement.
        Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True,
               autoincrement=True),
        Column("event_id", String(64), nullable=False, unique=True),
        Column("topic", String(255), nullable=False),
        Column("key", String(255), nullable=False),
        Column("envelope", JSON, nullable=False),
        Column("created_at", UTCDateTime(), nullable=False),
        Column("published_at", UTCDateTime(), nullable=True),
        Index(f"ix_{prefix}_outbox_unpublished", "published_at", "id"),
    )


class OutboxWriter:
    """Adds events to a service's outbox inside the caller's transaction."""

    def __init__(self, table: Table, source: str) -> None:
        self.table = table
        self.source = source

    async def add(self, session: AsyncSession, *events: EventData) -> list[Envelope]:
        envelopes = [Envelope.wrap(e, source=self.source) for e in events]
        if envelopes:
            await session.execute(
                self.table.insert(),
                [
                    {
                        "event_id": env.id,
                        "topic": env.topic,
                        "key": env.key,
                        "envelope": env.model_dump(mode="json"),
                        "created_at": env.time,
                    }
                    for env in envelopes
                ],
            )
        return envelopes
