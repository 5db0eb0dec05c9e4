"""A consumer service in a process of its own, for the crash tests.

    python -m tests.events.consumer_proc BOOTSTRAP DATABASE_URL TOPIC GROUP [DELAY]

Handles ``Ping`` events with ``EventConsumer`` (processed-events table + one effect row per
handling, both in the given database) and sleeps ``DELAY`` seconds in each handler, so a test
can SIGKILL it mid-batch. On SIGTERM it stops gracefully and prints its counters as JSON.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys

from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncSession

from tests.events.helpers import Ping, effects_table, record_effect
from tusk.db import Database
from tusk.events.consumer import EventConsumer, processed_events_table
from tusk.events.envelope import Envelope, EventData
from tusk.events.kafka import KafkaBus


async def main(bootstrap: str, url: str, topic: str, group: str, delay: float) -> None:
    metadata = MetaData()
    processed = processed_events_table("test", metadata)
    effects = effects_table(metadata)
    db = Database.from_url(url)
    async with db.engine.begin() as connection:
        await connection.run_sync(metadata.create_all)

    async def handle(session: AsyncSession, envelope: Envelope, data: EventData) -> None:
        assert isinstance(data, Ping)
        await asyncio.sleep(delay)
        await record_effect(session, effects, envelope, data)

    bus = KafkaBus(bootstrap, topics=())
    consumer = EventConsumer(bus, db, processed, group=group, topics=[topic], handler=handle)
    terminated = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, terminated.set)
    consumer.start()
    print("ready", flush=True)
    await terminated.wait()
    await consumer.stop()
    await bus.close()
    await db.dispose()
    print(json.dumps({"handled": consumer.handled, "duplicates": consumer.duplicates}), flush=True)


if __name__ == "__main__":
    bootstrap, url, topic, group, *rest = sys.argv[1:]
    asyncio.run(main(bootstrap, url, topic, group, float(rest[0]) if rest else 0.0))
