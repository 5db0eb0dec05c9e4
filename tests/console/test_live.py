"""The console's live feed reads the bus (in memory and real Kafka) and fans events out to
every open page; a page that falls behind is told to reload rather than holding others up."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from tusk.events.bus import EventBus
from tusk.events.envelope import Envelope
from tusk.events.kafka import KafkaBus
from tusk.events.memory import MemoryBus
from tusk.events.types import DatumCounts, JobSucceeded
from tusk_console.live import QUEUE_SIZE, LiveEvent, LiveFeed


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.kafka)])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[EventBus]:
    made: EventBus
    if request.param == "memory":
        made = MemoryBus(partitions=3)
    else:
        made = KafkaBus(request.getfixturevalue("kafka").bootstrap, partitions=3)
    yield made
    await made.close()


def succeeded(pipeline: str) -> Envelope:
    return Envelope.wrap(
        JobSucceeded(
            job=uuid.uuid4().hex, pipeline=pipeline, output_commit=uuid.uuid4().hex,
            counts=DatumCounts(total=3, processed=3), finished_at=datetime.now(UTC),
        ),
        source="tests/console",
    )


async def next_for(queue: asyncio.Queue[LiveEvent | None], pipeline: str) -> LiveEvent:
    while True:
        event = await queue.get()
        if event is not None and event.data.get("pipeline") == pipeline:
            return event


async def test_every_follower_gets_each_event_with_its_job_state(bus: EventBus) -> None:
    feed = LiveFeed(bus)
    await feed.start()
    pipeline = f"p-{uuid.uuid4().hex[:8]}"
    try:
        async with feed.follow() as first, feed.follow() as second:
            assert feed.followers == 2
            # The feed reads from the end of the log: a real broker positions it a moment after
            # start, so publish until one arrives (each envelope is new, with its own id).
            async with asyncio.timeout(120):
                while True:
                    await bus.publish([succeeded(pipeline)])
                    try:
                        got = await asyncio.wait_for(next_for(first, pipeline), 5)
                        break
                    except TimeoutError:
                        continue
                also = await next_for(second, pipeline)
            assert also.id == got.id
            body = got.as_json()
            assert body["kind"] == "job.succeeded"
            assert body["state"] == "success"
            assert body["pipeline"] == pipeline
            assert body["counts"]["processed"] == 3
        assert feed.followers == 0
    finally:
        await feed.stop()


async def test_a_follower_that_falls_behind_is_told_to_reload() -> None:
    bus = MemoryBus(partitions=1)
    feed = LiveFeed(bus)
    await feed.start()
    try:
        async with feed.follow() as slow, feed.follow() as fast:
            pipeline = "busy"
            await bus.publish([succeeded(pipeline) for _ in range(QUEUE_SIZE + 10)])
            async with asyncio.timeout(60):
                for _ in range(QUEUE_SIZE + 10):  # the fast one reads all as they come
                    await next_for(fast, pipeline)
            items = [slow.get_nowait() for _ in range(slow.qsize())]
            assert None in items  # "events were lost: reload"
            assert len(items) <= QUEUE_SIZE
    finally:
        await feed.stop()
        await bus.close()
