"""The consumer runtime: how a service acts on events, once each, in order per key.

One consumer group per service. For each record, in order:

- a record that is not a valid event (not a CloudEvent, bad JSON, unknown type, data that does
  not fit its type) goes to ``tusk.dlq`` with the reason in its headers, and the consumer goes on;
- an event of a type the consumer does not take (``types``) is passed over: no transaction;
- otherwise ``prepare`` (when given) runs first, outside any transaction: it fetches what the
  handler needs from other services, so that no network call waits under the transaction's
  locks, and may return the handler to run with it;
- then, in one SQL transaction, the event id is inserted into the service's processed-events
  table and the handler runs: a redelivered event finds its id there and is skipped, so a
  handler whose effects are SQL has them exactly once. (Effects outside the database must be
  idempotent by a natural key.)
- a handler that raises ``Unavailable`` or a connection error (``tusk.transient``: including a
  database that is restarting) is retried with exponential backoff, as long as it takes:
  later events of the partition wait, so order holds. Any other exception is a poison event:
  it goes to the dead-letter topic and the consumer goes on.

Offsets are committed after each fetched batch has been handled (in the background, while the
next batch is handled); a crash before the commit redelivers the batch, and the
processed-events table drops what was already done. ``stop()``
lets the event in hand finish, commits, and leaves the group.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import UTC, datetime

import structlog
from sqlalchemy import Column, MetaData, String, Table
from sqlalchemy.ext.asyncio import AsyncSession

from tusk.concurrency import wait_event
from tusk.db import Database, UTCDateTime, insert_for
from tusk.errors import InvalidArgument, Unavailable
from tusk.events.bus import EventBus, Record, Subscription, decode
from tusk.events.envelope import Envelope, EventData
from tusk.events.types import DLQ_TOPIC
from tusk.transient import is_transient

log = structlog.get_logger()

Handler = Callable[[AsyncSession, Envelope, EventData], Awaitable[None]]
# Before the transaction: the handler for this event (holding what was fetched), or None for
# the consumer's own.
Prepare = Callable[[Envelope, EventData], Awaitable[Handler | None]]
# Worth retrying: the database, the broker or another service did not answer.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (Unavailable, OSError, TimeoutError)

DLQ_REASON = "dlq_reason"
DLQ_SOURCE = ("dlq_topic", "dlq_partition", "dlq_offset", "dlq_group")


def processed_events_table(prefix: str, metadata: MetaData) -> Table:
    """The ids of the events a service has handled (``<prefix>_processed_events``)."""
    return Table(
        f"{prefix}_processed_events",
        metadata,
        Column("event_id", String(64), primary_key=True),
        Column("event_type", String(255), nullable=False),
        Column("processed_at", UTCDateTime(), nullable=False),
    )


class EventConsumer:
    def __init__(
        self,
        bus: EventBus,
        db: Database,
        processed: Table,
        *,
        group: str,
        topics: Sequence[str],
        handler: Handler,
        types: Collection[type[EventData]] | None = None,
        batch_size: int = 100,
        min_backoff: float = 0.1,
        max_backoff: float = 10.0,
        dlq_topic: str = DLQ_TOPIC,
        prepare: Prepare | None = None,
    ) -> None:
        self.bus = bus
        self.db = db
        self.processed = processed
        self.group = group
        self.topics = tuple(topics)
        self.handler = handler
        self.prepare = prepare
        # None: every type. Others share the topics (a service's own job events, say).
        self.types = tuple(types) if types is not None else None
        self.batch_size = batch_size
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.dlq_topic = dlq_topic
        # What this consumer did since it was made (for tests, metrics and logs).
        self.handled = 0
        self.ignored = 0
        self.duplicates = 0
        self.dead_lettered = 0
        self._stopped = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run in a background task until :meth:`stop`."""
        if self._task is None:
            self._stopped.clear()
            self._task = asyncio.create_task(self.run(), name=f"consumer {self.group}")
            self._task.add_done_callback(self._log_crash)

    def _log_crash(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "consumer: stopped by an unexpected error",
                group=self.group,
                exc_info=task.exception(),
            )

    async def stop(self) -> None:
        """Finish the event in hand, commit what was handled, leave the group."""
        self._stopped.set()
        task, self._task = self._task, None
        if task is not None:
            await task

    async def run(self) -> None:
        subscription = await self._subscribe()
        if subscription is None:
            return
        # Offsets are committed in the background while the next batch is handled (a commit
        # can take tens of milliseconds); one commit at a time, so they land in order.
        committing: asyncio.Task[None] | None = None
        try:
            while not self._stopped.is_set():
                records = await self._fetch(subscription)
                done: list[Record] = []
                for record in records:
                    if self._stopped.is_set() or not await self._handle(record):
                        break  # the rest of the batch is redelivered after a restart
                    done.append(record)
                if done:
                    if committing is not None:
                        await committing
                    committing = asyncio.create_task(self._commit(subscription, done))
        finally:
            if committing is not None:
                await committing
            await subscription.close()

    async def _subscribe(self) -> Subscription | None:
        backoff = self.min_backoff
        while not self._stopped.is_set():
            try:
                return await self.bus.subscribe(self.topics, group=self.group)
            except Unavailable as e:
                log.warning(
                    "consumer: cannot subscribe, retrying",
                    group=self.group,
                    error=e.message,
                    retry_in=backoff,
                )
                backoff = await self._backoff(backoff)
        return None

    async def _fetch(self, subscription: Subscription) -> list[Record]:
        try:
            # A short timeout keeps stop() prompt; records are returned as soon as they arrive.
            return await subscription.fetch(max_records=self.batch_size, max_wait=0.5)
        except Unavailable as e:
            log.warning("consumer: fetch failed", group=self.group, error=e.message)
            await self._backoff(self.max_backoff / 4)
            return []

    async def _commit(self, subscription: Subscription, records: list[Record]) -> None:
        try:
            await subscription.commit(records)
        except Unavailable as e:
            # Not fatal: the next commit covers these offsets, or they are redelivered and
            # recognised as processed.
            log.warning("consumer: offset commit failed", group=self.group, error=e.message)

    async def _handle(self, record: Record) -> bool:
        """Handle one record (or dead-letter it); False if stopped before it was done."""
        try:
            envelope = decode(record)
            data = envelope.payload()
        except InvalidArgument as e:
            return await self._dead_letter(record, e.message)
        if self.types is not None and not isinstance(data, self.types):
            self.ignored += 1
            return True
        backoff = self.min_backoff
        with structlog.contextvars.bound_contextvars(event_id=envelope.id, type=envelope.type):
            while True:
                try:
                    await self._apply(envelope, data)
                    return True
                except Exception as e:
                    if not is_transient(e):
                        log.exception(
                            "consumer: handler failed on a poison event", group=self.group
                        )
                        return await self._dead_letter(record, f"handler failed: {e!r}")
                    if self._stopped.is_set():
                        return False
                    log.warning(
                        "consumer: handler failed, retrying",
                        group=self.group,
                        error=str(e),
                        retry_in=backoff,
                    )
                    backoff = await self._backoff(backoff)

    async def _apply(self, envelope: Envelope, data: EventData) -> None:
        prepared = await self.prepare(envelope, data) if self.prepare is not None else None
        handler = prepared or self.handler
        async with self.db.session() as session:
            claimed = await session.execute(
                insert_for(session, self.processed)
                .values(
                    event_id=envelope.id, event_type=envelope.type, processed_at=datetime.now(UTC)
                )
                .on_conflict_do_nothing(index_elements=["event_id"])
            )
            if getattr(claimed, "rowcount", 1) == 0:
                self.duplicates += 1
                log.debug("consumer: already processed", group=self.group)
                return
            await handler(session, envelope, data)
        self.handled += 1

    async def _dead_letter(self, record: Record, reason: str) -> bool:
        log.warning(
            "consumer: dead-lettering a record",
            group=self.group,
            reason=reason,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
        )
        source = (record.topic, record.partition, record.offset, self.group)
        letter = Record(
            topic=self.dlq_topic,
            key=record.key,
            value=record.value,
            headers=(
                *record.headers,
                (DLQ_REASON, reason.encode()),
                *((name, str(v).encode()) for name, v in zip(DLQ_SOURCE, source, strict=True)),
            ),
        )
        backoff = self.min_backoff
        while not self._stopped.is_set():
            try:
                await self.bus.publish_records([letter])
                self.dead_lettered += 1
                return True
            except Unavailable as e:
                log.warning("consumer: dead-letter publish failed, retrying", error=e.message)
                backoff = await self._backoff(backoff)
        return False

    async def _backoff(self, delay: float) -> float:
        """Sleep ``delay`` seconds (less if stopped); the next, doubled delay."""
        await wait_event(self._stopped, delay)
        return min(delay * 2, self.max_backoff)
