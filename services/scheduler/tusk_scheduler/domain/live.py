"""The datums in a running job's workers' output: those running now and those that just ended
there, with their logs' lines (see :mod:`tusk.worker.live` for how a worker frames them)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tusk.worker.live import RUNNING as LIVE_RUNNING
from tusk.worker.live import LiveDatum, datums_in_output
from tusk_scheduler.runners.base import Runner, ShardHandle
from tusk_scheduler.tables import RUNNING, JobRow, ShardRow

LIVE_BYTES = 1 << 20
"""How much of the end of each worker's output is read for the datums' lines."""
STATE_BYTES = 64 << 10
"""... and for which datums run: the last lines of a worker's output name its datum."""


@dataclass(frozen=True)
class ShardDatum:
    shard: int
    datum: LiveDatum

    @property
    def running(self) -> bool:
        return self.datum.state == LIVE_RUNNING


async def live_datums(
    runner: Runner, job: JobRow, shards: Sequence[ShardRow], max_bytes: int = LIVE_BYTES
) -> list[ShardDatum]:
    """What the output of each of the job's workers (its shards' latest attempts) shows; none
    unless the job is running."""
    if job.state != RUNNING:
        return []
    found: list[ShardDatum] = []
    for row in shards:
        if row.handle is None:  # not started yet
            continue
        handle = ShardHandle(job.id, row.shard, row.attempt, row.handle)
        output = await runner.output(handle, max_bytes)
        found.extend(ShardDatum(row.shard, d) for d in datums_in_output(output))
    return found


async def running_ids(runner: Runner, job: JobRow, shards: Sequence[ShardRow]) -> set[str]:
    """The datums the job's workers are running now."""
    live = await live_datums(runner, job, shards, STATE_BYTES)
    return {d.datum.datum for d in live if d.running}
