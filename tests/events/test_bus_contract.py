"""The ``EventBus`` contract, run against ``MemoryBus`` and ``KafkaBus`` (the real broker)."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from tests.events.helpers import Buses, collect, drain, ping, seqs, wait_for
from tusk.events.bus import Record, decode, encode


def by_key(pairs: list[tuple[str, int]]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for name, seq in pairs:
        out[name].append(seq)
    return out


async def test_round_trip_keeps_the_cloudevent(buses: Buses, topic: str) -> None:
    await buses.create_topics(topic)
    bus = buses.new()
    sent = ping(topic, "a", 1)
    await bus.publish([sent])
    sub = await bus.subscribe([topic], group=None)
    [record] = await collect(sub, 1)
    await sub.close()
    assert record.key == b"a"
    assert dict(record.headers)["ce_type"] == b"io.tusk.test.ping.v1"
    assert dict(record.headers)["ce_id"] == sent.id.encode()
    assert decode(record) == sent
    assert encode(sent).value == record.value


async def test_order_holds_per_key(buses: Buses, topic: str) -> None:
    await buses.create_topics(topic)
    bus = buses.new()
    names = [f"k{i}" for i in range(7)]
    sent = [ping(topic, name, seq) for seq in range(40) for name in names]
    for start in range(0, len(sent), 50):  # several publish calls, as the relay makes
        await bus.publish(sent[start : start + 50])
    sub = await bus.subscribe([topic], group=None)
    records = await collect(sub, len(sent))
    await sub.close()
    assert len(records) == len(sent)
    assert by_key(seqs(records)) == {name: list(range(40)) for name in names}
    # One key, one partition.
    partitions = defaultdict(set)
    for record in records:
        partitions[record.key].add(record.partition)
    assert all(len(p) == 1 for p in partitions.values())


async def test_unacknowledged_records_come_again_after_a_restart(buses: Buses, topic: str) -> None:
    await buses.create_topics(topic)
    bus = buses.new()
    await bus.publish([ping(topic, f"k{i % 5}", i) for i in range(30)])

    first = await bus.subscribe([topic], group="g")
    received = await collect(first, 30)
    assert len(received) == 30
    await first.commit(received[:10])  # handled ten, then crashed
    await first.close()

    # The records after the committed offsets, and only those, come again.
    committed: dict[tuple[str, int], int] = {}
    for record in received[:10]:
        committed[(record.topic, record.partition)] = record.offset
    expected = {
        (r.partition, r.offset)
        for r in received
        if r.offset > committed.get((r.topic, r.partition), -1)
    }
    second = await buses.new().subscribe([topic], group="g")
    again = await drain(second)
    assert {(r.partition, r.offset) for r in again} == expected
    await second.commit(again)
    await second.close()

    third = await buses.new().subscribe([topic], group="g")
    assert await drain(third, quiet=1.0) == []
    await third.close()


async def test_groups_read_independently(buses: Buses, topic: str) -> None:
    await buses.create_topics(topic)
    bus = buses.new()
    await bus.publish([ping(topic, "k", i) for i in range(10)])
    one = await bus.subscribe([topic], group="one")
    got_one = await collect(one, 10)
    await one.commit(got_one)
    two = await buses.new().subscribe([topic], group="two")
    got_two = await collect(two, 10)
    assert seqs(got_one) == seqs(got_two) == [("k", i) for i in range(10)]
    await one.close()
    await two.close()


async def test_members_of_a_group_share_the_partitions(buses: Buses, topic: str) -> None:
    await buses.create_topics(topic)
    publisher = buses.new()
    members = [await buses.new().subscribe([topic], group="shared") for _ in range(2)]
    received: list[list[Record]] = [[], []]
    stop = asyncio.Event()

    async def consume(i: int) -> None:
        while not stop.is_set():
            batch = await members[i].fetch(max_records=100, max_wait=0.2)
            received[i] += batch
            await members[i].commit(batch)

    tasks = [asyncio.create_task(consume(i)) for i in range(2)]
    try:
        # Keep publishing on many keys until both members got some (a Kafka rebalance takes a
        # few seconds); everything published must arrive.
        sent = 0
        for _ in range(100):
            await publisher.publish([ping(topic, f"k{j}", sent) for j in range(12)])
            sent += 1
            if all(received):
                break
            await asyncio.sleep(0.2)
        expected = {(f"k{j}", s) for j in range(12) for s in range(sent)}
        # Until the members have read everything: a condition, not a guess at how long.
        await wait_for(
            lambda: {pair for r in received for pair in seqs(r)} >= expected,
            within=120,
            what="the members to read everything published",
        )
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        for member in members:
            await member.close()
    assert all(received), "one member of the group got nothing"
    everything = {pair for r in received for pair in seqs(r)}
    assert everything == {(f"k{j}", s) for j in range(12) for s in range(sent)}
    for member_records in received:  # each member sees its keys in order
        for values in by_key(seqs(member_records)).values():
            assert values == sorted(values)


async def test_from_end_skips_older_records(buses: Buses, topic: str) -> None:
    await buses.create_topics(topic)
    bus = buses.new()
    await bus.publish([ping(topic, "k", 0)])
    sub = await bus.subscribe([topic], group=None, from_beginning=False)
    await bus.publish([ping(topic, "k", 1)])  # at once: the reader's start is fixed already
    records = await collect(sub, 1)
    await sub.close()
    assert seqs(records) == [("k", 1)]


async def test_raw_records_pass_unchanged(buses: Buses, topic: str) -> None:
    await buses.create_topics(topic)
    bus = buses.new()
    await bus.publish_records(
        [Record(topic=topic, key=None, value=b"\xff not json", headers=(("x", b"1"),))]
    )
    sub = await bus.subscribe([topic], group=None)
    [record] = await collect(sub, 1)
    await sub.close()
    assert (record.key, record.value, record.headers) == (None, b"\xff not json", (("x", b"1"),))
