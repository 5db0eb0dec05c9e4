"""The outbox relay on SQLite and PostgreSQL, publishing to a ``MemoryBus``."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import MetaData, Table, func, select, update

from tests.backing.postgres import PostgresServer
from tests.events.helpers import Ping, collect, drain, seqs
from tusk.db import Database
from tusk.errors import Unavailable
from tusk.events.bus import Record
from tusk.events.envelope import Envelope
from tusk.events.memory import MemoryBus
from tusk.events.outbox import OutboxWriter, outbox_table
from tusk.events.relay import OutboxRelay

TOPIC = Ping.topic


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def outbox_db(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[str, Table]]:
    """A database URL and an outbox table of this test's own in it."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}"
    else:
        url = request.getfixturevalue("postgres").url
    metadata = MetaData()
    table = outbox_table(f"t{uuid.uuid4().hex[:10]}", metadata)
    db = Database.from_url(url)
    async with db.engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    yield url, table
    async with db.engine.begin() as connection:
        await connection.run_sync(metadata.drop_all)
    await db.dispose()


async def write(db: Database, writer: OutboxWriter, *events: Ping) -> list[Envelope]:
    async with db.session() as session:
        return await writer.add(session, *events)


async def published(db: Database, table: Table) -> int:
    async with db.session(write=False) as session:
        count = await session.scalar(
            select(func.count()).select_from(table).where(table.c.published_at.is_not(None))
        )
        return count or 0


async def test_a_commit_wakes_the_relay(outbox_db: tuple[str, Table]) -> None:
    url, table = outbox_db
    db, bus = Database.from_url(url), MemoryBus(partitions=1)
    relay = OutboxRelay(db, table, bus, poll_interval=60)  # the poll would be far too late
    writer = OutboxWriter(table, "tests", on_commit=relay.wake)
    sub = await bus.subscribe([TOPIC], group=None)
    relay.start()
    try:
        await drain(sub, quiet=0.3)  # the relay's first pass found nothing
        latencies = []
        for seq in range(20):
            started = time.monotonic()
            await write(db, writer, Ping(name="a", seq=seq))
            assert len(await collect(sub, 1, within=30)) == 1
            latencies.append(time.monotonic() - started)
        # Woken, not polled: well inside the 60 s poll however loaded the machine (the speed
        # itself is measured by loadtest/bench_events.py, not here).
        assert max(latencies) < 30, latencies

        # A transaction that rolls back publishes nothing.
        async def rolled_back() -> None:
            async with db.session() as session:
                await writer.add(session, Ping(name="a", seq=99))
                raise RuntimeError("rolled back")

        with pytest.raises(RuntimeError):
            await rolled_back()
        await write(db, writer, Ping(name="a", seq=20))
        assert seqs(await collect(sub, 1, within=30)) == [("a", 20)]
        assert await drain(sub, quiet=0.3) == []
    finally:
        await relay.stop()
        await sub.close()
        await db.dispose()


async def test_rows_go_out_in_id_order_and_are_marked(outbox_db: tuple[str, Table]) -> None:
    url, table = outbox_db
    db, bus = Database.from_url(url), MemoryBus(partitions=1)
    writer = OutboxWriter(table, "tests")
    for start in range(0, 1200, 100):
        await write(db, writer, *(Ping(name=f"k{i % 7}", seq=i) for i in range(start, start + 100)))
    relay = OutboxRelay(db, table, bus, batch_size=250)
    assert await relay.publish_pending() == 1200
    assert await relay.publish_pending() == 0
    sub = await bus.subscribe([TOPIC], group=None)
    records = await collect(sub, 1200)
    await sub.close()
    assert [seq for _, seq in seqs(records)] == list(range(1200))
    assert await published(db, table) == 1200
    await db.dispose()


async def test_a_new_relay_publishes_what_was_left(outbox_db: tuple[str, Table]) -> None:
    url, table = outbox_db
    db, bus = Database.from_url(url), MemoryBus()
    writer = OutboxWriter(table, "tests")  # the process that wrote these died before publishing
    sent = await write(db, writer, *(Ping(name="k", seq=i) for i in range(5)))
    relay = OutboxRelay(db, table, bus, poll_interval=60)
    sub = await bus.subscribe([TOPIC], group=None)
    relay.start()
    try:
        records = await collect(sub, 5, within=60)
    finally:
        await relay.stop()
        await sub.close()
    assert [r.header("ce_id") for r in records] == [e.id.encode() for e in sent]
    await db.dispose()


class FlakyBus(MemoryBus):
    """A bus that is down for the first ``failures`` publish calls."""

    def __init__(self, failures: int) -> None:
        super().__init__(partitions=1)
        self.failures = failures
        self.calls = 0

    async def publish_records(self, records: Sequence[Record]) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise Unavailable("broker down")
        await super().publish_records(records)


async def test_the_relay_backs_off_and_retries_while_the_bus_is_down(
    outbox_db: tuple[str, Table],
) -> None:
    url, table = outbox_db
    db, bus = Database.from_url(url), FlakyBus(failures=4)
    relay = OutboxRelay(db, table, bus, poll_interval=60, min_backoff=0.05, max_backoff=0.2)
    writer = OutboxWriter(table, "tests", on_commit=relay.wake)
    sub = await bus.subscribe([TOPIC], group=None)
    relay.start()
    try:
        for seq in range(30):  # commits go on while the bus is down
            await write(db, writer, Ping(name="k", seq=seq))
        records = await collect(sub, 30, within=60)
    finally:
        await relay.stop()
        await sub.close()
    assert [seq for _, seq in seqs(records)] == list(range(30))
    assert 5 <= bus.calls < 30  # retries back off instead of following every commit
    assert await published(db, table) == 30
    await db.dispose()


@pytest.mark.postgres
async def test_relays_of_several_processes_take_turns(postgres: PostgresServer) -> None:
    url = postgres.url
    metadata = MetaData()
    table = outbox_table(f"t{uuid.uuid4().hex[:10]}", metadata)
    dbs = [Database.from_url(url) for _ in range(3)]
    async with dbs[0].engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    bus = MemoryBus(partitions=1)
    relays = [OutboxRelay(db, table, bus, batch_size=7, poll_interval=0.05) for db in dbs]
    writers = [OutboxWriter(table, "tests", on_commit=r.wake) for r in relays]
    sub = await bus.subscribe([TOPIC], group=None)
    for relay in relays:
        relay.start()
    try:
        for seq in range(300):  # each commit wakes the relay of "its" process
            i = seq % 3
            await write(dbs[i], writers[i], Ping(name="k", seq=seq))
            if seq % 50 == 0:
                await asyncio.sleep(0.01)
        records = await collect(sub, 300, within=20)
        records += await drain(sub, quiet=0.5)
    finally:
        for relay in relays:
            await relay.stop()
        await sub.close()
    assert [seq for _, seq in seqs(records)] == list(range(300))  # in order, none twice
    assert sum(r.published for r in relays) == 300
    async with dbs[0].engine.begin() as connection:
        await connection.run_sync(metadata.drop_all)
    for db in dbs:
        await db.dispose()


async def test_prune_deletes_rows_published_long_ago(outbox_db: tuple[str, Table]) -> None:
    url, table = outbox_db
    db = Database.from_url(url)
    writer = OutboxWriter(table, "tests")
    await write(db, writer, *(Ping(name="k", seq=i) for i in range(4)))
    relay = OutboxRelay(db, table, MemoryBus(), retention=timedelta(days=1))
    await relay.publish_pending()
    await write(db, writer, Ping(name="k", seq=4))  # not yet published: must stay
    async with db.session() as session:
        await session.execute(
            update(table)
            .where(table.c.id.in_(select(table.c.id).order_by(table.c.id).limit(3)))
            .values(published_at=datetime.now(UTC) - timedelta(days=2))
        )
    assert await relay.prune() == 3
    async with db.session(write=False) as session:
        assert await session.scalar(select(func.count()).select_from(table)) == 2
    await db.dispose()
