"""Choosing the event bus from the settings: Kafka when a bootstrap server is configured, else
an in-memory bus (embedded mode). Kept apart from :mod:`tusk.events.bus`, which both
implementations import, so that the protocol module does not import its implementations."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tusk.events.bus import EventBus
from tusk.settings import CommonSettings


@asynccontextmanager
async def open_event_bus(settings: CommonSettings) -> AsyncIterator[EventBus]:
    """``KafkaBus`` when ``TUSK_KAFKA_BOOTSTRAP`` is set, else a new (private) ``MemoryBus``."""
    bus: EventBus
    if settings.kafka_bootstrap:
        # Imported only when used: aiokafka is slow to import, and embedded mode never needs it.
        from tusk.events.kafka import KafkaBus

        bus = KafkaBus(
            settings.kafka_bootstrap,
            partitions=settings.kafka_partitions,
            replication_factor=settings.kafka_replication_factor,
        )
    else:
        from tusk.events.memory import MemoryBus

        bus = MemoryBus(settings.kafka_partitions)
    try:
        yield bus
    finally:
        await bus.close()
