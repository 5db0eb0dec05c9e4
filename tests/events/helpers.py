"""Helpers shared by the event tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Column, Integer, MetaData, String, Table, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tusk.db import Database
from tusk.events.bus import EventBus, Record, Subscription, decode
from tusk.events.envelope import Envelope, EventData, register
from tusk.events.kafka import KafkaBus


@register
class Ping(EventData):
    """A test event: ``seq`` counts up per ``name`` (the key)."""

    type = "io.tusk.test.ping.v1"
    topic = "tusk.test"
    name: str
    seq: int
    fail: str | None = None  # how a test handler should fail on it: "poison" or "transient"

    def key(self) -> str:
        return self.name


def ping(topic: str, name: str, seq: int, fail: str | None = None) -> Envelope:
    envelope = Envelope.wrap(Ping(name=name, seq=seq, fail=fail), source="tests")
    return envelope.model_copy(update={"topic": topic})


@dataclass
class Buses:
    """Makes buses of one kind over one shared log, and closes them all at the end."""

    make: Callable[[], EventBus]
    kind: str
    made: list[EventBus] = field(default_factory=list)

    def new(self) -> EventBus:
        bus = self.make()
        self.made.append(bus)
        return bus

    async def create_topics(self, *topics: str) -> None:
        bus = self.new()
        if isinstance(bus, KafkaBus):
            await bus.create_topics(topics)

    async def close(self) -> None:
        for bus in self.made:
            await bus.close()


async def collect(
    subscription: Subscription, count: int, *, within: float = 30.0
) -> list[Record]:
    """Fetch until ``count`` records arrived or ``within`` seconds passed."""
    records: list[Record] = []
    deadline = time.monotonic() + within
    while len(records) < count and time.monotonic() < deadline:
        records += await subscription.fetch(max_records=500, max_wait=0.5)
    return records


async def drain(subscription: Subscription, *, quiet: float = 1.5) -> list[Record]:
    """Fetch until nothing arrives for ``quiet`` seconds."""
    records: list[Record] = []
    while batch := await subscription.fetch(max_records=500, max_wait=quiet):
        records += batch
    return records


def seqs(records: Sequence[Record]) -> list[tuple[str, int]]:
    out = []
    for r in records:
        data = decode(r).data
        out.append((data["name"], data["seq"]))
    return out


def effects_table(metadata: MetaData) -> Table:
    """What test handlers do: one row per handling, so a double effect shows as two rows."""
    return Table(
        "test_effects",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("event_id", String(64), nullable=False),
        Column("name", String(64), nullable=False),
        Column("seq", Integer, nullable=False),
    )


async def record_effect(
    session: AsyncSession, table: Table, envelope: Envelope, data: Ping
) -> None:
    await session.execute(
        table.insert().values(event_id=envelope.id, name=data.name, seq=data.seq)
    )


async def effect_counts(db: Database, table: Table) -> dict[str, int]:
    async with db.session(write=False) as session:
        rows = await session.execute(
            select(table.c.event_id, func.count()).group_by(table.c.event_id)
        )
        return dict(rows.all())


async def wait_for(
    condition: Callable[[], object], *, within: float = 30.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.05)
