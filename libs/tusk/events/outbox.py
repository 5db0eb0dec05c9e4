"""The transactional outbox: an event row is written in the same SQL transaction as the change
it describes, so there is no change without its event and no event without its change. A
relay publishes the rows in ``id`` order and marks them sent.

Each service owns its own outbox table (``<service>_outbox``), made by :func:`outbox_table`.
The writer calls ``on_commit`` (the relay's ``wake``) once a transaction that added events has
committed, so the relay publishes at once instead of waiting for its next poll.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    event,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from tusk.db import UTCDateTime
from tusk.events.envelope import Envelope, EventData


def outbox_table(prefix: str, metadata: MetaData) -> Table:
    return Table(
        f"{prefix}_outbox",
        metadata,
        # BIGINT on PostgreSQL, INTEGER (the rowid alias) on SQLite, so both autoincrement.
        Column(
            "id",
            BigInteger().with_variant(Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        Column("event_id", String(64), nullable=False, unique=True),
        Column("topic", String(255), nullable=False),
        Column("key", String(255), nullable=False),
        Column("envelope", JSON, nullable=False),
        Column("created_at", UTCDateTime(), nullable=False),
        Column("published_at", UTCDateTime(), nullable=True),
        # A row the broker can never take is parked, with why, so that the rows after it flow;
        # replaying it clears both (see tusk.events.relay).
        Column("parked_at", UTCDateTime(), nullable=True),
        Column("park_reason", Text(), nullable=True),
        Index(f"ix_{prefix}_outbox_unpublished", "published_at", "id"),
    )


class OutboxWriter:
    """Adds events to a service's outbox inside the caller's transaction."""

    def __init__(
        self, table: Table, source: str, *, on_commit: Callable[[], None] | None = None
    ) -> None:
        self.table = table
        self.source = source
        self.on_commit = on_commit

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
            if self.on_commit is not None:
                call_after_commit(session, self.on_commit)
        return envelopes


_AFTER_COMMIT = "tusk.after_commit"


def call_after_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Call ``callback`` when the session's transaction commits; forget it on rollback."""
    sync = session.sync_session
    if _AFTER_COMMIT not in sync.info:
        sync.info[_AFTER_COMMIT] = []
        event.listen(sync, "after_commit", _run_after_commit)
        event.listen(sync, "after_rollback", _forget_after_commit)
    callbacks: list[Callable[[], None]] = sync.info[_AFTER_COMMIT]
    if callback not in callbacks:
        callbacks.append(callback)


def _run_after_commit(session: Session, *_: Any) -> None:
    callbacks: list[Callable[[], None]] = session.info[_AFTER_COMMIT]
    pending, callbacks[:] = list(callbacks), []
    for callback in pending:
        callback()


def _forget_after_commit(session: Session, *_: Any) -> None:
    session.info[_AFTER_COMMIT].clear()
