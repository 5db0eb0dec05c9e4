"""``KafkaBus``: the event bus on Kafka, through aiokafka.

The producer is idempotent with ``acks=all``: a record is stored once, in order per partition,
even when the client retries after a lost answer. Consumers never auto-commit; the consumer
runtime commits offsets after it has handled the records. aiokafka exceptions stop here:
callers see ``Unavailable`` (retry later) or ``InvalidArgument``.

Connecting is lazy, so that a service starts (and keeps writing its outbox) while the broker
is down; the first publish or subscribe connects and creates the topics.

A publish that is not acknowledged within ``publish_timeout`` fails with ``Unavailable`` and
the producer is dropped (a new one connects on the next publish). Connecting is bounded by the
same timeout: aiokafka's ``start()`` of an idempotent producer asks the broker for a producer
id and retries that forever, so against a broker that is up but not yet serving (just
restarted, or starved of CPU) it never returns, and the caller (the outbox relay, holding its
lock and its transaction) hung with it instead of backing off and trying again.

aiokafka's producer retries a partition without a leader in a tight loop, and a partition
whose leader it still believes in (a broker that went away) every 100 ms for as long as the
broker is down. So a dropped producer's unsent records are failed at once and it is closed,
rather than left retrying them in the background (each such producer takes CPU from a machine
that is already struggling). Nothing is lost: the relay publishes again from the oldest
unmarked row (records already on the wire may arrive twice, which consumers drop by event id,
and never out of order).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaConnectionError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordTooLargeError,
    TopicAlreadyExistsError,
)

from tusk.errors import InvalidArgument, Unavailable
from tusk.events.bus import Record, Subscription, encode
from tusk.events.envelope import Envelope
from tusk.events.types import DLQ_TOPIC, TOPICS

log = structlog.get_logger()


def _ignore_outcome(future: asyncio.Future[Any]) -> None:
    """Retrieve a future's exception, so that asyncio does not warn it was never looked at."""
    if not future.cancelled():
        future.exception()


def _translate(e: Exception, doing: str) -> Exception:
    if isinstance(e, RecordTooLargeError | MessageSizeTooLargeError):
        return InvalidArgument(f"Kafka refused the record while {doing}: {e!r}")
    return Unavailable(f"Kafka did not answer while {doing}: {e!r}")


class KafkaBus:
    def __init__(
        self,
        bootstrap: str,
        *,
        partitions: int = 3,
        replication_factor: int = 1,
        topics: Sequence[str] = (*TOPICS, DLQ_TOPIC),
        client_id: str = "tusk",
        request_timeout_ms: int = 10_000,
        publish_timeout: float = 10.0,
    ) -> None:
        self.bootstrap = bootstrap
        self.partitions = partitions
        self.replication_factor = replication_factor
        self.topics = tuple(topics)
        self.client_id = client_id
        self.request_timeout_ms = request_timeout_ms
        self.publish_timeout = publish_timeout
        self._producer: AIOKafkaProducer | None = None
        self._dropped: set[asyncio.Task[None]] = set()  # producers closing in the background
        self._topics_ready = False
        self._start_lock = asyncio.Lock()

    async def start(self) -> None:
        """Create the topics and connect the producer; raises ``Unavailable`` on failure."""
        await self._ensure_topics()
        async with self._start_lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self.bootstrap,
                    client_id=self.client_id,
                    acks="all",
                    enable_idempotence=True,
                    request_timeout_ms=self.request_timeout_ms,
                )
                try:
                    async with asyncio.timeout(self.publish_timeout):
                        await producer.start()
                except (KafkaError, OSError, TimeoutError) as e:
                    self._drop(producer)
                    raise _translate(e, "connecting the producer") from e
                self._producer = producer

    async def _ensure_topics(self) -> None:
        # A consumer of a topic that does not exist yet would only notice it at its next
        # metadata refresh (minutes later), so consumers create them too.
        async with self._start_lock:
            if not self._topics_ready:
                await self.create_topics(self.topics)
                self._topics_ready = True

    async def create_topics(self, topics: Sequence[str]) -> None:
        """Create any of ``topics`` that do not exist yet, with this bus's partition count."""
        if not topics:
            return
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap,
            client_id=f"{self.client_id}-admin",
            request_timeout_ms=self.request_timeout_ms,
        )
        try:
            await admin.start()
            response = await admin.create_topics(
                [NewTopic(t, self.partitions, self.replication_factor) for t in topics]
            )
        except (KafkaError, OSError) as e:
            raise _translate(e, "creating topics") from e
        finally:
            await admin.close()
        for topic, code, *rest in response.topic_errors:
            if code not in (0, TopicAlreadyExistsError.errno):
                message = rest[0] if rest else ""
                raise Unavailable(f"Kafka could not create topic {topic!r}: {code} {message}")

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        await self.publish_records([encode(e) for e in envelopes])

    async def publish_records(self, records: Sequence[Record]) -> None:
        if self._producer is None:
            await self.start()
        assert self._producer is not None
        producer = self._producer
        # send() only appends to the producer's per-partition queue; the futures resolve when
        # the broker acknowledges. Queued in order, so order per partition holds.
        futures: list[asyncio.Future[Any]] = []
        try:
            async with asyncio.timeout(self.publish_timeout):
                for r in records:
                    futures.append(
                        await producer.send(r.topic, r.value, key=r.key, headers=list(r.headers))
                    )
                await asyncio.gather(*futures)
        except (KafkaError, OSError, TimeoutError) as e:
            for future in futures:  # their outcome no longer matters; don't warn about it
                future.add_done_callback(_ignore_outcome)
            self._drop(producer)
            raise _translate(e, "publishing") from e

    def _drop(self, producer: AIOKafkaProducer) -> None:
        if self._producer is producer:
            self._producer = None
        # Fail what it still holds, so that stop() does not wait for a delivery (see above).
        producer._message_accumulator.fail_all(KafkaConnectionError("producer dropped"))
        task = asyncio.create_task(producer.stop())
        self._dropped.add(task)
        task.add_done_callback(self._dropped.discard)
        task.add_done_callback(_ignore_outcome)  # a producer that fails to stop is gone anyway

    async def subscribe(
        self, topics: Sequence[str], *, group: str | None, from_beginning: bool = True
    ) -> Subscription:
        await self._ensure_topics()
        consumer = AIOKafkaConsumer(
            *topics,
            bootstrap_servers=self.bootstrap,
            client_id=self.client_id,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if from_beginning else "latest",
            request_timeout_ms=self.request_timeout_ms,
        )
        try:
            await consumer.start()
            if group is None:
                # A lone reader's start is fixed now rather than at its first fetch, so what
                # is published once subscribe() has returned is read, not skipped.
                for partition in consumer.assignment():
                    await consumer.position(partition)
        except (KafkaError, OSError) as e:
            await consumer.stop()
            raise _translate(e, "starting a consumer") from e
        return _KafkaSubscription(consumer, group)

    async def close(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()
        if self._dropped:
            await asyncio.wait(self._dropped, timeout=self.publish_timeout)


class _KafkaSubscription:
    def __init__(self, consumer: AIOKafkaConsumer, group: str | None) -> None:
        self._consumer = consumer
        self._group = group

    async def fetch(self, *, max_records: int = 100, max_wait: float = 1.0) -> list[Record]:
        try:
            batches = await self._consumer.getmany(
                timeout_ms=int(max_wait * 1000), max_records=max_records
            )
        except KafkaError as e:
            raise _translate(e, "fetching") from e
        return [
            Record(
                topic=m.topic,
                key=m.key,
                value=m.value,
                headers=tuple(m.headers),
                partition=m.partition,
                offset=m.offset,
                timestamp_ms=m.timestamp,
            )
            for messages in batches.values()
            for m in messages
        ]

    async def commit(self, records: Sequence[Record]) -> None:
        if self._group is None or not records:
            return
        assigned = self._consumer.assignment()
        offsets: dict[TopicPartition, int] = {}
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            if tp in assigned:  # a partition a rebalance took away is not ours to commit
                offsets[tp] = r.offset + 1
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as e:
            # A rebalance happened: the partitions' new owner re-reads from the last commit.
            log.warning("offset commit lost to a rebalance", group=self._group, error=repr(e))
        except KafkaError as e:
            raise _translate(e, "committing offsets") from e

    async def close(self) -> None:
        await self._consumer.stop()
