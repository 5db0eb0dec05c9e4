"""A scripted ``Runner``: no processes, no pods, so the scheduler's decisions about its workers
(done, lost, started again, given up) can be tried in milliseconds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from tusk_scheduler.runners.base import SecretNotFound, ShardHandle, ShardLaunch, ShardStatus

RUNNING = ShardStatus("running")


def exited(code: int) -> ShardStatus:
    return ShardStatus("exited", exit_code=code)


def lost(detail: str = "") -> ShardStatus:
    return ShardStatus("lost", detail=detail)


@dataclass
class FakeRunner:
    """Each (shard, attempt) answers ``status`` with its script in order, then repeats the last
    entry; without a script it runs and then exits 0. ``output`` is what the worker printed."""

    script: dict[tuple[int, int], Sequence[ShardStatus]] = field(default_factory=dict)
    output_of: dict[tuple[int, int], str] = field(default_factory=dict)
    kind: str = "fake"
    takes_spec: bool = False
    max_shards: int | None = None
    started: list[ShardLaunch] = field(default_factory=list)
    cancelled: list[ShardHandle] = field(default_factory=list)
    ended: set[tuple[int, int]] = field(default_factory=set)
    secrets: dict[tuple[str, str], str] = field(default_factory=dict)
    _asked: dict[tuple[int, int], int] = field(default_factory=dict)

    async def start(self, launch: ShardLaunch) -> ShardHandle:
        self.started.append(launch)
        return ShardHandle(
            launch.job, launch.shard, launch.attempt, f"fake-{launch.shard}-{launch.attempt}"
        )

    async def status(self, handle: ShardHandle) -> ShardStatus:
        key = (handle.shard, handle.attempt)
        script = self.script.get(key, (RUNNING, exited(0)))
        asked = self._asked.get(key, 0)
        self._asked[key] = asked + 1
        status = script[min(asked, len(script) - 1)]
        if not status.running:
            self.ended.add(key)
        return status

    async def cancel(self, handle: ShardHandle) -> None:
        self.cancelled.append(handle)
        self.ended.add((handle.shard, handle.attempt))

    async def find_running(self, job: str) -> list[ShardHandle]:
        return [
            ShardHandle(
                launch.job, launch.shard, launch.attempt, f"fake-{launch.shard}-{launch.attempt}"
            )
            for launch in self.started
            if launch.job == job and (launch.shard, launch.attempt) not in self.ended
        ]

    async def output(self, handle: ShardHandle, max_bytes: int) -> str:
        return self.output_of.get((handle.shard, handle.attempt), "")[-max_bytes:]

    async def read_secret(self, name: str, key: str) -> str:
        value = self.secrets.get((name, key))
        if value is None:
            raise SecretNotFound(f"no secret {name!r} with key {key!r}")
        return value

    async def cleanup(self, job: str) -> None:
        pass

    async def close(self) -> None:
        pass
