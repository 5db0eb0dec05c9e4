"""A spout that reads a Kafka topic into its output repo: each batch of messages becomes one
commit, a file per message at /<topic>/<partition>/<offset>, and the consumer group's offsets are
committed to Kafka only after the tusk commit is finished. A crash between the two reads the
batch again and writes the same paths with the same contents: the repo ends up the same.

Settings (the pipeline's transform.env): KAFKA_BOOTSTRAP (host:port,...), KAFKA_TOPIC and
KAFKA_GROUP (default tusk-spout-<topic>).
"""

from __future__ import annotations

import asyncio
import os
import signal

from aiokafka import AIOKafkaConsumer

from tusk.worker.spout import spout_commit


async def consume(bootstrap: str, topic: str, group: str) -> None:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    print(f"reading {topic} from {bootstrap} as {group}", flush=True)
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=1000, max_records=1000)
            records = [r for partition in batches.values() for r in partition]
            if not records:
                continue
            async with spout_commit(f"{len(records)} messages from {topic}") as commit:
                for r in records:
                    await commit.put(f"/{topic}/{r.partition}/{r.offset:020d}", r.value or b"")
            await consumer.commit()
            print(f"committed {len(records)} messages", flush=True)
    finally:
        await consumer.stop()


async def main() -> None:
    topic = os.environ["KAFKA_TOPIC"]
    group = os.environ.get("KAFKA_GROUP", f"tusk-spout-{topic}")
    task = asyncio.create_task(consume(os.environ["KAFKA_BOOTSTRAP"], topic, group))
    # Stopped by the scheduler (pipeline deleted or updated): the open commit is abandoned.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        print("stopped", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
