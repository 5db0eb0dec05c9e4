"""``OutboxRelay``: publishes a service's outbox rows in ``id`` order and marks them published.

It is woken by the outbox writer as soon as a transaction that wrote events commits
(``OutboxWriter(on_commit=relay.wake)``), and otherwise looks every ``poll_interval`` seconds
as a safety net (rows written by another process, a wake-up lost to a crash). When the bus or
the database fails it backs off and retries, so nothing is lost while the broker is down; on
start it first publishes whatever a previous process left behind.

A crash between publishing and marking publishes those rows again: delivery is at-least-once,
and consumers drop duplicates by event id.

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
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import Table, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tusk.concurrency import wait_event
from tusk.db import Database
from tusk.events.bus import EventBus
from tusk.events.envelope import Envelope

log = structlog.get_logger()


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
    ) -> None:
        self.db = db
        self.table = table
        self.bus = bus
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.retention = retention
        self.published = 0  # rows published by this relay since it was made
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
                await self.bus.publish(envelopes)
                async with self.db.session() as session:
                    await self._mark(session, ids)
            return len(ids)
        async with self.db.session() as session:
            # Held until this transaction ends: one relay at a time publishes this outbox.
            await session.execute(select(func.pg_advisory_xact_lock(self._lock_key)))
            ids, envelopes = await self._pending(session)
            if ids:
                await self.bus.publish(envelopes)
                await self._mark(session, ids)
        return len(ids)

    async def _pending(self, session: AsyncSession) -> tuple[list[int], list[Envelope]]:
        t = self.table
        rows = (
            await session.execute(
                select(t.c.id, t.c.envelope)
                .where(t.c.published_at.is_(None))
                .order_by(t.c.id)
                .limit(self.batch_size)
            )
        ).all()
        return [r.id for r in rows], [Envelope.model_validate(r.envelope) for r in rows]

    async def _mark(self, session: AsyncSession, ids: Sequence[int]) -> None:
        await session.execute(
            update(self.table)
            .where(self.table.c.id.in_(ids))
            .values(published_at=datetime.now(UTC))
        )
