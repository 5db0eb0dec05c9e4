"""``OutboxRelay``: publishes a service's outbox rows in ``id`` order and marks them published.

It is woken by the outbox writer as soon as a transaction that wrote events commits
(``OutboxWriter(on_commit=relay.wake)``), and otherwise looks every ``poll_interval`` seconds
as a safety net (rows written by another process, a wake-up lost to a crash). When the bus or
the database fails it backs off and retries, so nothing is lost while the broker is down; on
start it first publishes whatever a previous process left behind.

A crash between publishing and marking publishes those rows again: delivery is at-least-once,
and consumers drop duplicates by event id.

A row the broker can never take must not hold back every row after it (one oversized
``job.created`` used to stop every pipeline, across restarts). Before publishing, each record's
size is checked against ``max_record_bytes``; when the bus still refuses a batch as invalid
(``InvalidArgument``: a broker with a lower limit), the batch is published one row at a time to
find the culprit. Such a row is **parked**: marked with the time and the reason, logged,
counted in ``tusk_outbox_parked_rows``, listed by ``GET /v1/outbox/parked`` and sent again by
``POST /v1/outbox/parked/{id}/replay`` once the cause is fixed (tusk.events.parking). The rows
after it flow on; only transient failures (``Unavailable``) make the relay retry in place.

Several processes may run a relay over the same PostgreSQL outbox (replicas of a service): each
pass holds a transaction-scoped advisory lock, so one relay publishes at a time and rows go out
in ``id`` order. SQLite means one process (the embedded mode): there the pass reads, publishes,
then marks in a short write transaction, so the process-wide write lock is never held while
waiting for the broker.
"""

from __future__ import annotations

import asyncio
import random
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy import Table, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tusk.concurrency import wait_event
from tusk.db import Database
from tusk.errors import InvalidArgument
from tusk.events.bus import EventBus, Record, encode
from tusk.events.envelope import Envelope

log = structlog.get_logger()

# Kafka's default limit for one record is 1 MiB (message.max.bytes, max.request.size) with
# some room taken by the batch framing; staying under it means no broker refuses a record.
DEFAULT_MAX_RECORD_BYTES = 1_000_000


@dataclass(frozen=True)
class ParkedRow:
    id: int
    event_id: str
    type: str
    topic: str
    key: str
    size_bytes: int
    reason: str
    parked_at: datetime


def record_size(record: Record) -> int:
    headers = sum(len(k) + len(v) for k, v in record.headers)
    return len(record.key or b"") + len(record.value or b"") + headers


class OutboxRelay:
    def __init__(
        self,
        db: Database,
        table: Table,
        bus: EventBus,
        *,
        batch_size: int = 500,
        poll_interval: float = 5.0,
        min_backoff: float = 0.1,
        max_backoff: float = 5.0,
        retention: timedelta = timedelta(days=7),
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.db = db
        self.table = table
        self.bus = bus
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.retention = retention
        self.max_record_bytes = max_record_bytes
        self.published = 0  # rows published by this relay since it was made
        self.registry = registry if registry is not None else CollectorRegistry()
        self.parked_rows = Gauge(
            "tusk_outbox_parked_rows",
            "Outbox rows parked because the broker can never take them (see /v1/outbox/parked)",
            ["table"],
            registry=self.registry,
        ).labels(table.name)
        self._lock_key = zlib.crc32(f"tusk outbox {table.name}".encode())
        self._wakeup = asyncio.Event()
        self._pass_lock = asyncio.Lock()
        self._stopped = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Publish soon: called after a commit that wrote events (safe from any coroutine)."""
        self._wakeup.set()

    def start(self) -> None:
        if self._task is None:
            self._stopped.clear()
            self._task = asyncio.create_task(self._run(), name=f"outbox relay {self.table.name}")

    async def stop(self, grace: float = 10.0) -> None:
        """Let the pass in hand finish (up to ``grace`` seconds), then stop."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopped.set()
        self._wakeup.set()
        try:
            await asyncio.wait_for(task, grace)
        except TimeoutError:
            # Cancelled mid-publish: those rows stay unpublished and go out again later.
            log.warning("outbox relay did not stop in time; cancelled", table=self.table.name)

    async def publish_pending(self) -> int:
        """Publish every unpublished row, oldest first; the number published.

        Raises ``Unavailable`` when the bus or the database fails (the rows stay pending).
        """
        total = 0
        async with self._pass_lock:
            while True:
                count = await self._publish_batch()
                total += count
                self.published += count
                if count < self.batch_size:
                    return total

    async def prune(self) -> int:
        """Delete rows published longer than ``retention`` ago; the number deleted."""
        cutoff = datetime.now(UTC) - self.retention
        async with self.db.session() as session:
            result = await session.execute(
                delete(self.table).where(self.table.c.published_at < cutoff)
            )
        return int(getattr(result, "rowcount", 0) or 0)

    async def _run(self) -> None:
        backoff = self.min_backoff
        failures = 0
        try:
            parked = await self.count_parked()
        except Exception as e:  # the database may be down at start: the count is cosmetic
            log.warning("outbox relay: cannot count parked rows", error=str(e))
        else:
            if parked:
                log.warning(
                    "outbox relay: rows are parked (GET /v1/outbox/parked to see why)",
                    table=self.table.name,
                    rows=parked,
                )
        while not self._stopped.is_set():
            self._wakeup.clear()  # before the pass: a commit during the pass wakes us again
            try:
                await self.publish_pending()
            except Exception as e:  # the relay must outlive any failure; the rows stay pending
                failures += 1
                delay = backoff * random.uniform(0.8, 1.2)
                log.warning(
                    "outbox relay: publishing failed, retrying",
                    table=self.table.name,
                    error=str(e),
                    retry_in=round(delay, 2),
                )
                backoff = min(backoff * 2, self.max_backoff)
                # Commits do not cut a backoff short (they keep coming while the broker is down).
                await wait_event(self._stopped, delay)
                continue
            if failures:
                log.info("outbox relay: publishing again", table=self.table.name, after=failures)
                failures = 0
            backoff = self.min_backoff
            if not await wait_event(self._wakeup, self.poll_interval):
                await self._prune_quietly()  # housekeeping when idle for a whole interval

    async def _prune_quietly(self) -> None:
        try:
            deleted = await self.prune()
        except Exception as e:  # housekeeping: try again next time
            log.warning("outbox relay: pruning failed", table=self.table.name, error=str(e))
            return
        if deleted:
            log.info("outbox relay: pruned published rows", table=self.table.name, rows=deleted)

    async def _publish_batch(self) -> int:
        if self.db.is_sqlite:
            async with self.db.session(write=False) as session:
                ids, envelopes = await self._pending(session)
            if ids:
                sent, parked = await self._publish(ids, envelopes)
                async with self.db.session() as session:
                    await self._mark(session, sent)
                    await self._park(session, parked)
            return len(ids)
        async with self.db.session() as session:
            # Held until this transaction ends: one relay at a time publishes this outbox.
            await session.execute(select(func.pg_advisory_xact_lock(self._lock_key)))
            ids, envelopes = await self._pending(session)
            if ids:
                sent, parked = await self._publish(ids, envelopes)
                await self._mark(session, sent)
                await self._park(session, parked)
        return len(ids)

    async def _publish(
        self, ids: Sequence[int], envelopes: Sequence[Envelope]
    ) -> tuple[list[int], dict[int, str]]:
        """Publish the rows that can be; (ids published, {id: why} for rows to park).

        Raises ``Unavailable`` when the bus is down: then nothing is marked or parked."""
        records = [encode(e) for e in envelopes]
        parked: dict[int, str] = {}
        batch: list[tuple[int, Record]] = []
        for row_id, envelope, record in zip(ids, envelopes, records, strict=True):
            size = record_size(record)
            if size > self.max_record_bytes:
                parked[row_id] = (
                    f"the {envelope.type} event is {size} bytes, over the {self.max_record_bytes}"
                    "-byte limit for one record (TUSK_MAX_EVENT_BYTES)"
                )
            else:
                batch.append((row_id, record))
        try:
            await self.bus.publish_records([r for _, r in batch])
            sent = [row_id for row_id, _ in batch]
        except InvalidArgument:
            # The broker refused a record it will never take: one at a time, to find which.
            sent = []
            for row_id, record in batch:
                try:
                    await self.bus.publish_records([record])
                except InvalidArgument as e:
                    parked[row_id] = e.message
                else:
                    sent.append(row_id)
        return sent, parked

    async def _park(self, session: AsyncSession, parked: dict[int, str]) -> None:
        if not parked:
            return
        now = datetime.now(UTC)
        for row_id, reason in parked.items():
            await session.execute(
                update(self.table)
                .where(self.table.c.id == row_id)
                .values(parked_at=now, park_reason=reason[:2000])
            )
            log.error(
                "outbox relay: parked a row the broker cannot take; the rows after it go on",
                table=self.table.name,
                row=row_id,
                reason=reason,
            )
        self.parked_rows.inc(len(parked))

    async def count_parked(self) -> int:
        """The number of parked rows (also kept in ``tusk_outbox_parked_rows``)."""
        async with self.db.session(write=False) as session:
            count = await session.scalar(
                select(func.count())
                .select_from(self.table)
                .where(self.table.c.parked_at.is_not(None), self.table.c.published_at.is_(None))
            )
        self.parked_rows.set(count or 0)
        return count or 0

    async def list_parked(self, limit: int = 100) -> list[ParkedRow]:
        t = self.table
        async with self.db.session(write=False) as session:
            rows = (
                await session.execute(
                    select(t.c.id, t.c.event_id, t.c.topic, t.c.key, t.c.envelope)
                    .add_columns(t.c.park_reason, t.c.parked_at)
                    .where(t.c.parked_at.is_not(None), t.c.published_at.is_(None))
                    .order_by(t.c.id)
                    .limit(limit)
                )
            ).all()
        return [
            ParkedRow(
                id=r.id,
                event_id=r.event_id,
                type=str(r.envelope.get("type", "")),
                topic=r.topic,
                key=r.key,
                size_bytes=record_size(encode(Envelope.model_validate(r.envelope))),
                reason=r.park_reason or "",
                parked_at=r.parked_at,
            )
            for r in rows
        ]

    async def replay(self, row_id: int | None = None) -> int:
        """Unpark one row (or every parked row): the relay publishes it again, in ``id`` order
        with what is pending. The number of rows unparked."""
        t = self.table
        query = update(t).where(t.c.parked_at.is_not(None), t.c.published_at.is_(None))
        if row_id is not None:
            query = query.where(t.c.id == row_id)
        async with self.db.session() as session:
            result = await session.execute(query.values(parked_at=None, park_reason=None))
        replayed = int(getattr(result, "rowcount", 0) or 0)
        if replayed:
            log.info("outbox relay: parked rows replayed", table=t.name, rows=replayed)
            self.parked_rows.dec(replayed)
            self.wake()
        return replayed

    async def _pending(self, session: AsyncSession) -> tuple[list[int], list[Envelope]]:
        t = self.table
        rows = (
            await session.execute(
                select(t.c.id, t.c.envelope)
                .where(t.c.published_at.is_(None), t.c.parked_at.is_(None))
                .order_by(t.c.id)
                .limit(self.batch_size)
            )
        ).all()
        return [r.id for r in rows], [Envelope.model_validate(r.envelope) for r in rows]

    async def _mark(self, session: AsyncSession, ids: Sequence[int]) -> None:
        if not ids:
            return
        await session.execute(
            update(self.table)
            .where(self.table.c.id.in_(ids))
            .values(published_at=datetime.now(UTC))
        )
