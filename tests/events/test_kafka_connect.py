"""Connecting the Kafka producer is bounded: a broker that accepts connections but never hands
out a producer id (just restarted, or starved of CPU) must not hang the publisher."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer

from tests.events.helpers import ping
from tusk.errors import Unavailable
from tusk.events.kafka import KafkaBus


async def test_a_producer_that_never_starts_fails_the_publish_in_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[AIOKafkaProducer] = []
    stopped: list[AIOKafkaProducer] = []

    async def never_starts(self: AIOKafkaProducer) -> None:
        started.append(self)
        await asyncio.Event().wait()  # aiokafka's wait for a producer id, which never ends

    async def stop(self: AIOKafkaProducer) -> None:
        stopped.append(self)

    monkeypatch.setattr(AIOKafkaProducer, "start", never_starts)
    monkeypatch.setattr(AIOKafkaProducer, "stop", stop)
    bus = KafkaBus("127.0.0.1:9", topics=(), publish_timeout=0.5)
    try:
        # The bound here only detects a hang; the publish itself gives up after 0.5 s.
        async with asyncio.timeout(60):
            with pytest.raises(Unavailable, match="connecting the producer"):
                await bus.publish([ping("tusk.test", "k", 1)])
            with pytest.raises(Unavailable):  # and the next publish tries a new producer
                await bus.publish([ping("tusk.test", "k", 2)])
    finally:
        await bus.close()
    assert len(started) == 2
    assert started[0] is not started[1]
    assert stopped == started
