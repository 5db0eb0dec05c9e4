"""``MemoryBus``: the embedded mode's event bus, inside one process, with Kafka's contract.

Topics are lists of partitions, each an append-only list of records; a key always maps to the
same partition. A consumer group keeps committed offsets per partition and spreads partitions
over its members; a member that joins, leaves or restarts makes every member re-read its
partitions from the committed offsets, so records fetched but not committed come again.

Records every group has committed are dropped (in chunks), so a long-running process does not
keep every event ever published; a group that has not committed yet keeps everything. Lone
readers (no group) do not hold records back.

Several services of one process share a single instance (``tusk up`` builds it once). Nothing
survives the process: the outbox tables, not the bus, are what makes events durable there.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from tusk.events.bus import Record, Subscription, encode
from tusk.events.envelope import Envelope

TopicPartition = tuple[str, int]


@dataclass
class _Partition:
    """An append-only log whose records below ``start`` have been dropped."""

    records: list[Record] = field(default_factory=list)
    start: int = 0  # the offset of records[0]

    @property
    def end(self) -> int:
        return self.start + len(self.records)

    def read(self, position: int, count: int) -> list[Record]:
        first = max(position, self.start) - self.start
        return self.records[first : first + count]

    def drop_below(self, offset: int) -> None:
        del self.records[: offset - self.start]
        self.start = offset


@dataclass
class _Group:
    committed: dict[TopicPartition, int] = field(default_factory=dict)
    members: list[_MemorySubscription] = field(default_factory=list)
    generation: int = 0


class MemoryBus:
    def __init__(self, partitions: int = 3, *, drop_every: int = 10_000) -> None:
        self.partitions = partitions
        self.drop_every = drop_every  # records per partition dropped at once, at the least
        self._logs: dict[str, list[_Partition]] = {}
        self._groups: dict[str, _Group] = {}
        self._round_robin = itertools.count()
        # Replaced on every change; waiters hold the old one, which is set to wake them.
        self._changed = asyncio.Event()

    def _log(self, topic: str) -> list[_Partition]:
        if topic not in self._logs:
            self._logs[topic] = [_Partition() for _ in range(self.partitions)]
        return self._logs[topic]

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        await self.publish_records([encode(e) for e in envelopes])

    async def publish_records(self, records: Sequence[Record]) -> None:
        now = int(time.time() * 1000)
        for record in records:
            log = self._log(record.topic)
            if record.key is None:
                partition = next(self._round_robin) % len(log)
            else:
                partition = zlib.crc32(record.key) % len(log)
            stored = replace(
                record, partition=partition, offset=log[partition].end, timestamp_ms=now
            )
            log[partition].records.append(stored)
        if records:
            self._notify()

    async def subscribe(
        self, topics: Sequence[str], *, group: str | None, from_beginning: bool = True
    ) -> Subscription:
        for topic in topics:
            self._log(topic)
        sub = _MemorySubscription(self, tuple(topics), group, from_beginning)
        if group is not None:
            state = self._groups.setdefault(group, _Group())
            state.members.append(sub)
            state.generation += 1
            self._notify()
        return sub

    async def close(self) -> None:
        self._notify()

    def end_offset(self, topic: str, partition: int) -> int:
        return self._log(topic)[partition].end

    def start_offset(self, topic: str, partition: int) -> int:
        """The oldest offset still kept."""
        return self._log(topic)[partition].start

    def _drop_committed(self, tp: TopicPartition) -> None:
        """Drop the records of ``tp`` that every group reading its topic has committed."""
        topic, number = tp
        floors = []
        for group in self._groups.values():
            if tp in group.committed:
                floors.append(group.committed[tp])
            elif any(topic in member.topics for member in group.members):
                return  # a reader that has committed nothing yet may need all of it
        partition = self._log(topic)[number]
        if floors and min(floors) - partition.start >= self.drop_every:
            partition.drop_below(min(floors))

    def committed(self, group: str) -> dict[TopicPartition, int]:
        """A copy of the group's committed offsets (for tests and debugging)."""
        return dict(self._groups.get(group, _Group()).committed)


class _MemorySubscription:
    def __init__(
        self, bus: MemoryBus, topics: tuple[str, ...], group: str | None, from_beginning: bool
    ) -> None:
        self._bus = bus
        self.topics = topics
        self._group = group
        self._from_beginning = from_beginning
        self._positions: dict[TopicPartition, int] = {}
        self._generation = -1
        self._turn = 0  # which partition is read first, so that no partition starves the rest
        self._closed = False
        if group is None:  # a lone reader owns every partition from the start
            self._positions = {tp: self._initial(tp) for tp in self._all_partitions()}

    def _all_partitions(self) -> list[TopicPartition]:
        return [(t, p) for t in self.topics for p in range(len(self._bus._log(t)))]

    def _initial(self, tp: TopicPartition) -> int:
        if self._group is not None:
            committed = self._bus._groups[self._group].committed.get(tp)
            if committed is not None:
                return committed
        return 0 if self._from_beginning else self._bus.end_offset(*tp)

    def _rebalance(self) -> None:
        """After a membership change, own a share of the partitions, from committed offsets."""
        if self._group is None:
            return
        state = self._bus._groups[self._group]
        if state.generation == self._generation:
            return
        self._generation = state.generation
        mine: dict[TopicPartition, int] = {}
        for topic in self.topics:
            readers = [m for m in state.members if topic in m.topics]
            for partition in range(len(self._bus._log(topic))):
                if readers[partition % len(readers)] is self:
                    mine[(topic, partition)] = self._initial((topic, partition))
        self._positions = mine

    def _take(self, max_records: int) -> list[Record]:
        self._rebalance()
        owned = list(self._positions)
        self._turn += 1
        batch: list[Record] = []
        for i in range(len(owned)):
            topic, partition = tp = owned[(self._turn + i) % len(owned)]
            records = self._bus._log(topic)[partition].read(
                self._positions[tp], max_records - len(batch)
            )
            if records:
                batch.extend(records)
                self._positions[tp] = records[-1].offset + 1
            if len(batch) >= max_records:
                break
        return batch

    async def fetch(self, *, max_records: int = 100, max_wait: float = 1.0) -> list[Record]:
        deadline = time.monotonic() + max_wait
        while not self._closed:
            changed = self._bus._changed
            batch = self._take(max_records)
            remaining = deadline - time.monotonic()
            if batch or remaining <= 0:
                return batch
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancel that
            # lands as its inner wait ends, and the reader then never stops.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await changed.wait()
        return []

    async def commit(self, records: Sequence[Record]) -> None:
        if self._group is None or self._closed:
            return
        self._rebalance()
        committed = self._bus._groups[self._group].committed
        for record in records:
            tp = (record.topic, record.partition)
            if tp in self._positions:  # a partition a rebalance took away is not ours to commit
                committed[tp] = record.offset + 1
        for tp in {(r.topic, r.partition) for r in records}:
            self._bus._drop_committed(tp)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._group is not None:
            state = self._bus._groups[self._group]
            state.members.remove(self)
            state.generation += 1
        self._bus._notify()
