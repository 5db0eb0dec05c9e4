"""Watching a running job's shards until each has ended with nothing left to run.

A shard whose worker ended while datums of it have no result was lost; it is started again for
those datums, a bounded number of times, and then the job fails naming the shard, how its
worker ended and the end of its output. What "started again" and "results" mean is the
caller's (:mod:`.running`): this loop only needs the :class:`Runner` and the callbacks, so
every recovery branch can be tried against a fake runner in milliseconds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from tusk_scheduler.domain.job import JobFailure
from tusk_scheduler.runners.base import Runner, ShardHandle, ShardStatus
from tusk_scheduler.tables import SHARD_DONE, SHARD_STARTED

log = structlog.get_logger()

OUTPUT_BYTES = 2000  # of a lost worker's own output, quoted in the job's reason


class ShardRecord(Protocol):
    """A shard's row, as far as resuming it goes."""

    @property
    def state(self) -> str: ...
    @property
    def attempt(self) -> int: ...
    @property
    def handle(self) -> str | None: ...


@dataclass(frozen=True)
class Resumed:
    """What becomes of each of a job's shards as its running phase begins."""

    # A worker of the shard still runs (the runner found it): watched, not started again.
    adopted: dict[int, ShardHandle] = field(default_factory=dict)
    # Adopted shards whose row names another worker or attempt (one started just before a
    # crash, recorded only now).
    to_record: list[int] = field(default_factory=list)
    # Recorded as started, no longer running: its worker's status says how it ended.
    ended: dict[int, ShardHandle] = field(default_factory=dict)
    # Never started, or its start was never recorded: started now.
    to_start: list[int] = field(default_factory=list)


def resume_shards(
    job: str, rows: Mapping[int, ShardRecord], live: Mapping[int, ShardHandle]
) -> Resumed:
    """Sort a job's shards (their rows; ``live``: the workers the runner finds running) into
    those to adopt, to judge by how their worker ended, and to start. Done shards are left."""
    resumed = Resumed()
    for n, row in sorted(rows.items()):
        if row.state == SHARD_DONE:
            continue
        if n in live:
            resumed.adopted[n] = live[n]
            if (row.handle, row.attempt) != (live[n].ref, live[n].attempt):
                resumed.to_record.append(n)
        elif row.state == SHARD_STARTED and row.handle is not None:
            resumed.ended[n] = ShardHandle(job, n, row.attempt, row.handle)
        else:
            resumed.to_start.append(n)
    return resumed


@dataclass(frozen=True)
class ShardCalls:
    """What the watch loop asks of the job's execution."""

    # Before each look: raises to stop watching (the scheduler stops, a cancel, a timeout).
    check: Callable[[], Awaitable[None]]
    # Record the results that appeared; the unfinished datums shrink accordingly.
    collect: Callable[[], Awaitable[None]]
    # Start shard n again (attempt given) for its datums without a result; None if none is left.
    restart: Callable[[int, int], Awaitable[ShardHandle | None]]
    # Shard n ended with nothing left to run.
    done: Callable[[int, ShardStatus], Awaitable[None]]
    sleep: Callable[[float], Awaitable[None]]


async def watch_shards(
    runner: Runner,
    handles: dict[int, ShardHandle],
    unfinished: Mapping[str, int],
    calls: ShardCalls,
    *,
    attempts: int,
    poll_interval: float,
) -> None:
    """Poll ``handles`` (shard → its worker) until none is left; ``unfinished`` maps each
    datum without a result to its shard and is kept current by ``calls.collect``."""
    handles = dict(handles)
    while handles:
        await calls.check()
        statuses = {n: await runner.status(h) for n, h in handles.items()}
        # Results after statuses: an ended worker's results are all in by now.
        await calls.collect()
        for n, status in statuses.items():
            if status.running:
                continue
            remaining = sum(1 for s in unfinished.values() if s == n)
            if not remaining:
                del handles[n]
                await calls.done(n, status)
                continue
            attempt = handles[n].attempt + 1
            output = await runner.output(handles[n], OUTPUT_BYTES)
            if never_started(status) and status.permanent:
                # Another pod of the same spec would meet the same wall: fail now, saying why.
                raise JobFailure(
                    f"shard {n} ({remaining} datums unfinished) could not start: "
                    f"{describe(status)} (not retried: another attempt would fail the same way)"
                )
            if attempt >= attempts:
                # A worker that never started (its image, a Secret, no node) was not lost.
                ended = "could not start" if never_started(status) else "was lost"
                raise JobFailure(
                    f"shard {n} ({remaining} datums unfinished) {ended} {attempt} "
                    f"times; last: {describe(status)}" + quoted(output)
                )
            await runner.cancel(handles[n])  # whatever the lost worker left running
            log.warning(
                "shard lost; starting it again",
                shard=n,
                attempt=attempt,
                unfinished=remaining,
                status=describe(status),
            )
            handle = await calls.restart(n, attempt)
            if handle is None:
                del handles[n]
            else:
                handles[n] = handle
        if handles:
            await calls.sleep(poll_interval)


def never_started(status: ShardStatus) -> bool:
    """The runner's word for a worker that could not start: ended, no exit code, a reason."""
    return status.state == "exited" and status.exit_code is None and bool(status.detail)


def describe(status: ShardStatus | None) -> str:
    if status is None:
        return ""
    if status.state == "exited" and status.exit_code is None:
        return status.detail or "the worker ended without an exit status"
    if status.state == "exited":
        return f"the worker exited with status {status.exit_code}"
    return status.detail or "the worker was lost"


def quoted(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()][-5:]
    return f"; the worker's last output: {' | '.join(lines)}" if lines else ""
