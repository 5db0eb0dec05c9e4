"""What only ``MemoryBus`` does: dropping records every group has committed."""

from __future__ import annotations

from tests.events.helpers import collect, drain, ping, seqs
from tusk.events.memory import MemoryBus


async def test_records_every_group_committed_are_dropped() -> None:
    bus = MemoryBus(partitions=1, drop_every=10)
    fast = await bus.subscribe(["t"], group="fast")
    slow = await bus.subscribe(["t"], group="slow")
    await bus.publish([ping("t", "k", i) for i in range(30)])

    await fast.commit(await collect(fast, 30))
    assert bus.start_offset("t", 0) == 0  # "slow" has committed nothing: keep everything

    read = await collect(slow, 30)
    await slow.commit(read[:15])
    assert bus.start_offset("t", 0) == 15
    await slow.commit(read[:20])
    assert bus.start_offset("t", 0) == 15  # fewer than drop_every more: not yet

    # A new group starts at the oldest record kept; a restarted one where it left off.
    late = await bus.subscribe(["t"], group="late")
    assert [s for _, s in seqs(await drain(late, quiet=0.1))] == list(range(15, 30))
    await slow.close()
    again = await bus.subscribe(["t"], group="slow")
    assert [s for _, s in seqs(await drain(again, quiet=0.1))] == list(range(20, 30))
