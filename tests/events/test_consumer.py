"""The consumer runtime on both buses: once per event, retries, dead letters, graceful stop."""

from __future__ import annotations

import asyncio

from sqlalchemy import MetaData, select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.events.helpers import (
    Buses,
    Ping,
    collect,
    drain,
    effect_counts,
    ping,
    record_effect,
    wait_for,
)
from tusk.db import Database
from tusk.errors import Unavailable
from tusk.events.bus import Record, encode
from tusk.events.consumer import DLQ_REASON, EventConsumer
from tusk.events.envelope import Envelope, EventData
from tusk.events.types import CommitFinished

Scratch = tuple[Database, MetaData]


def make_consumer(
    buses: Buses, scratch: Scratch, topic: str, *, handler: object = None, group: str = "svc"
) -> EventConsumer:
    db, metadata = scratch
    effects = metadata.tables["test_effects"]

    async def default(session: AsyncSession, envelope: Envelope, data: EventData) -> None:
        assert isinstance(data, Ping)
        if data.fail == "poison":
            raise ValueError(f"cannot handle seq {data.seq}")
        await record_effect(session, effects, envelope, data)

    return EventConsumer(
        buses.new(), db, metadata.tables["test_processed_events"], group=group, topics=[topic],
        handler=handler or default,  # type: ignore[arg-type]
        min_backoff=0.01, max_backoff=0.1, dlq_topic=f"{topic}.dlq",
    )


async def test_each_event_takes_effect_once(buses: Buses, scratch_db: Scratch, topic: str) -> None:
    db, metadata = scratch_db
    await buses.create_topics(topic, f"{topic}.dlq")
    events = [ping(topic, f"k{i % 3}", i) for i in range(20)]
    bus = buses.new()
    await bus.publish(events)
    await bus.publish(events[5:8])  # redelivered by a relay that crashed before marking
    consumer = make_consumer(buses, scratch_db, topic)
    consumer.start()
    await wait_for(lambda: consumer.handled + consumer.duplicates == 23, what="23 deliveries")
    await consumer.stop()
    counts = await effect_counts(db, metadata.tables["test_effects"])
    assert counts == {e.id: 1 for e in events}
    assert consumer.duplicates == 3


async def test_bad_events_go_to_the_dead_letter_topic(
    buses: Buses, scratch_db: Scratch, topic: str
) -> None:
    db, metadata = scratch_db
    await buses.create_topics(topic, f"{topic}.dlq")
    good = [ping(topic, "k", 0), ping(topic, "k", 2), ping(topic, "k", 5)]
    unknown = encode(ping(topic, "k", 3))
    unknown = Record(
        topic=topic, key=b"k", value=unknown.value,
        headers=tuple((n, b"io.tusk.nothing.v9" if n == "ce_type" else v)
                      for n, v in unknown.headers),
    )
    bad_data = encode(ping(topic, "k", 4))
    bad_data = Record(topic=topic, key=b"k", value=b'{"name": "k"}', headers=bad_data.headers)
    bus = buses.new()
    await bus.publish([good[0]])
    await bus.publish_records([Record(topic=topic, key=b"k", value=b"{oops")])  # no CloudEvent
    await bus.publish([good[1], ping(topic, "k", 1, fail="poison")])
    await bus.publish_records([unknown, bad_data])
    await bus.publish([good[2]])

    consumer = make_consumer(buses, scratch_db, topic)
    consumer.start()
    await wait_for(lambda: consumer.handled == 3, what="the good events")
    await consumer.stop()
    assert consumer.dead_lettered == 4
    assert set(await effect_counts(db, metadata.tables["test_effects"])) == {e.id for e in good}

    dlq = await buses.new().subscribe([f"{topic}.dlq"], group=None)
    letters = await collect(dlq, 4)
    await dlq.close()
    reasons = [dict(r.headers)[DLQ_REASON].decode() for r in letters]
    assert "not a CloudEvent: missing header(s) ce_specversion, ce_id, ce_source, ce_type" in (
        reasons
    )
    assert "unknown event type 'io.tusk.nothing.v9'" in reasons
    assert any(r.startswith("handler failed: ValueError('cannot handle seq 1')") for r in reasons)
    assert any("seq" in r and "Field required" in r for r in reasons), reasons
    source = dict(letters[0].headers)
    assert source["dlq_topic"] == topic.encode()
    assert source["dlq_group"] == b"svc"


async def test_transient_failures_are_retried_in_place(
    buses: Buses, scratch_db: Scratch, topic: str
) -> None:
    db, metadata = scratch_db
    await buses.create_topics(topic, f"{topic}.dlq")
    effects = metadata.tables["test_effects"]
    attempts: dict[int, int] = {}
    order: list[int] = []

    async def flaky(session: AsyncSession, envelope: Envelope, data: EventData) -> None:
        assert isinstance(data, Ping)
        attempts[data.seq] = attempts.get(data.seq, 0) + 1
        if data.seq == 1 and attempts[data.seq] <= 3:
            raise Unavailable("the database is down")
        if data.seq == 2 and attempts[data.seq] == 1:
            raise ConnectionResetError("connection lost")
        await record_effect(session, effects, envelope, data)
        order.append(data.seq)

    await buses.new().publish([ping(topic, "k", i) for i in range(4)])
    consumer = make_consumer(buses, scratch_db, topic, handler=flaky)
    consumer.start()
    await wait_for(lambda: consumer.handled == 4, what="four events")
    await consumer.stop()
    assert order == [0, 1, 2, 3]  # later events waited for the one being retried
    assert attempts == {0: 1, 1: 4, 2: 2, 3: 1}
    assert consumer.dead_lettered == 0
    assert sorted((await effect_counts(db, effects)).values()) == [1, 1, 1, 1]


async def test_stop_finishes_the_event_in_hand(
    buses: Buses, scratch_db: Scratch, topic: str
) -> None:
    db, metadata = scratch_db
    await buses.create_topics(topic, f"{topic}.dlq")
    effects = metadata.tables["test_effects"]
    in_hand, release = asyncio.Event(), asyncio.Event()

    async def slow(session: AsyncSession, envelope: Envelope, data: EventData) -> None:
        assert isinstance(data, Ping)
        if data.seq == 1:
            in_hand.set()
            await release.wait()
        await record_effect(session, effects, envelope, data)

    await buses.new().publish([ping(topic, "k", i) for i in range(3)])
    consumer = make_consumer(buses, scratch_db, topic, handler=slow)
    consumer.start()
    await asyncio.wait_for(in_hand.wait(), 30)
    stopping = asyncio.create_task(consumer.stop())
    await asyncio.sleep(0.2)
    assert not stopping.done()  # waits for the handler
    release.set()
    await stopping
    assert consumer.handled == 2  # seq 0 and the one in hand; seq 2 was left for later
    assert len(await effect_counts(db, effects)) == 2

    # The group resumes after the last handled event: only seq 2 is delivered again.
    sub = await buses.new().subscribe([topic], group="svc")
    rest = await drain(sub)
    await sub.close()
    assert [r.offset for r in rest] == [2]


async def test_events_of_types_not_taken_are_passed_over(
    buses: Buses, scratch_db: Scratch, topic: str
) -> None:
    """Nothing is recorded for them: no processed-event row, no handler call."""
    db, metadata = scratch_db
    await buses.create_topics(topic, f"{topic}.dlq")
    await buses.new().publish([ping(topic, "k", i) for i in range(5)])
    consumer = make_consumer(buses, scratch_db, topic)
    consumer.types = (CommitFinished,)
    consumer.start()
    await wait_for(lambda: consumer.ignored == 5, what="5 events passed over")
    await consumer.stop()
    assert consumer.handled == 0
    async with db.session(write=False) as session:
        rows = await session.execute(select(metadata.tables["test_processed_events"]))
        assert rows.all() == []
    assert await effect_counts(db, metadata.tables["test_effects"]) == {}
