"""The shard-watch loop's recovery branches against a scripted runner: no processes, no
database, no repo service, so each case takes milliseconds."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from tests.scheduler.fakes import RUNNING, FakeRunner, exited, lost
from tusk_scheduler.domain.job import JobFailure
from tusk_scheduler.domain.shards import ShardCalls, resume_shards, watch_shards
from tusk_scheduler.runners.base import ShardHandle, ShardLaunch, ShardStatus

JOB = "0" * 32


@dataclass
class Job:
    """A job's shards as the execution would see them: which datums each attempt of a shard
    gets through before its worker ends, and what the loop asked for."""

    runner: FakeRunner
    unfinished: dict[str, int]
    completes: dict[tuple[int, int], set[str]] = field(default_factory=dict)
    left_for_restart: bool = True
    done: list[tuple[int, ShardStatus]] = field(default_factory=list)
    restarts: list[tuple[int, int]] = field(default_factory=list)
    sleeps: int = 0

    async def start(self, shard: int, attempt: int = 0) -> ShardHandle:
        return await self.runner.start(
            ShardLaunch(JOB, "p", shard, attempt, output_repo="p", meta_commit="m" * 32)
        )

    def calls(self) -> ShardCalls:
        async def check() -> None:
            if self.sleeps > 50:
                raise AssertionError("the watch does not end")

        async def collect() -> None:
            # An ended worker's results are all in the meta commit by the time it ended.
            for key in self.runner.ended:
                for datum in self.completes.get(key, ()):
                    self.unfinished.pop(datum, None)

        async def restart(shard: int, attempt: int) -> ShardHandle | None:
            self.restarts.append((shard, attempt))
            if not self.left_for_restart:
                return None
            return await self.start(shard, attempt)

        async def done(shard: int, status: ShardStatus) -> None:
            self.done.append((shard, status))

        async def sleep(_seconds: float) -> None:
            self.sleeps += 1

        return ShardCalls(check=check, collect=collect, restart=restart, done=done, sleep=sleep)

    async def watch(self, shards: int = 1, *, attempts: int = 3) -> None:
        handles = {n: await self.start(n) for n in range(shards)}
        await watch_shards(
            self.runner, handles, self.unfinished, self.calls(), attempts=attempts, poll_interval=1
        )


async def test_a_worker_that_ends_with_every_result_in_is_done() -> None:
    job = Job(FakeRunner(script={(0, 0): [RUNNING, exited(0)]}), {"a": 0, "b": 0})
    job.completes[(0, 0)] = {"a", "b"}
    await job.watch()
    assert job.done == [(0, exited(0))]
    assert (job.restarts, job.runner.cancelled, job.unfinished) == ([], [], {})
    assert job.sleeps == 1  # one look while it ran


async def test_a_lost_shard_starts_again_for_its_unfinished_datums() -> None:
    runner = FakeRunner(script={(0, 0): [lost("evicted")], (0, 1): [RUNNING, exited(0)]})
    job = Job(runner, {"a": 0, "b": 0})
    job.completes[(0, 0)] = {"a"}
    job.completes[(0, 1)] = {"b"}
    await job.watch()
    assert job.restarts == [(0, 1)]
    assert [(h.shard, h.attempt) for h in runner.cancelled] == [(0, 0)]  # what it left running
    assert [(launch.shard, launch.attempt) for launch in runner.started] == [(0, 0), (0, 1)]
    assert job.done == [(0, exited(0))]
    assert job.unfinished == {}


async def test_a_shard_lost_every_time_fails_the_job_saying_how() -> None:
    runner = FakeRunner(
        script={(0, a): [lost()] for a in range(3)},
        output_of={(0, 2): "staging inputs\n\nKilled: out of memory\n"},
    )
    job = Job(runner, {"a": 0, "b": 0})
    with pytest.raises(JobFailure) as failed:
        await job.watch(attempts=3)
    assert failed.value.reason == (
        "shard 0 (2 datums unfinished) was lost 3 times; last: the worker was lost; "
        "the worker's last output: staging inputs | Killed: out of memory"
    )
    assert job.restarts == [(0, 1), (0, 2)]
    assert job.done == []


async def test_a_worker_exiting_with_datums_left_is_named_by_its_status() -> None:
    job = Job(FakeRunner(script={(0, 0): [exited(2)]}), {"a": 0})
    with pytest.raises(JobFailure, match=r"lost 1 times; last: the worker exited with status 2$"):
        await job.watch(attempts=1)


async def test_a_worker_that_never_started_is_not_called_lost() -> None:
    cannot = ShardStatus("exited", None, "the image could not be pulled (ErrImagePull)")
    job = Job(FakeRunner(script={(0, a): [cannot] for a in range(2)}), {"a": 0})
    with pytest.raises(JobFailure) as failed:
        await job.watch(attempts=2)
    assert failed.value.reason == (
        "shard 0 (1 datums unfinished) could not start 2 times; "
        "last: the image could not be pulled (ErrImagePull)"
    )


async def test_a_worker_that_can_never_start_fails_the_job_at_once() -> None:
    never = ShardStatus(
        "exited",
        None,
        'the container could not be configured (CreateContainerConfigError: secret "s" not found)',
        permanent=True,
    )
    job = Job(FakeRunner(script={(0, 0): [never]}), {"a": 0})
    with pytest.raises(JobFailure) as failed:
        await job.watch(attempts=3)
    assert failed.value.reason == (
        "shard 0 (1 datums unfinished) could not start: the container could not be configured "
        '(CreateContainerConfigError: secret "s" not found) (not retried: another attempt '
        "would fail the same way)"
    )
    assert job.restarts == []
    assert [(launch.shard, launch.attempt) for launch in job.runner.started] == [(0, 0)]


async def test_a_restart_with_nothing_left_drops_the_shard() -> None:
    job = Job(FakeRunner(script={(0, 0): [lost()]}), {"a": 0}, left_for_restart=False)
    await job.watch()
    assert job.restarts == [(0, 1)]
    assert job.done == []  # the restart recorded it done itself
    assert job.sleeps == 0


async def test_one_shard_lost_does_not_disturb_another() -> None:
    runner = FakeRunner(
        script={
            (0, 0): [RUNNING, RUNNING, RUNNING, exited(0)],
            (1, 0): [lost()],
            (1, 1): [RUNNING, exited(0)],
        }
    )
    job = Job(runner, {"a": 0, "b": 1})
    job.completes.update({(0, 0): {"a"}, (1, 1): {"b"}})
    await job.watch(shards=2)
    assert job.restarts == [(1, 1)]
    assert sorted(n for n, _ in job.done) == [0, 1]
    assert [(h.shard, h.attempt) for h in runner.cancelled] == [(1, 0)]


async def test_a_check_that_raises_ends_the_watch() -> None:
    job = Job(FakeRunner(script={(0, 0): [RUNNING]}), {"a": 0})
    calls = job.calls()

    async def timed_out() -> None:
        raise JobFailure("the job timed out (job_timeout 1s)")

    with pytest.raises(JobFailure, match="timed out"):
        await watch_shards(
            job.runner,
            {0: await job.start(0)},
            job.unfinished,
            ShardCalls(timed_out, calls.collect, calls.restart, calls.done, calls.sleep),
            attempts=3,
            poll_interval=1,
        )


@dataclass
class Row:
    state: str
    attempt: int = 0
    handle: str | None = None


async def test_resuming_adopts_live_workers_judges_ended_ones_and_starts_the_rest() -> None:
    """As after a scheduler restart: the runner still runs shard 0's second attempt (started
    just before the crash, so its row still says the first), shard 1's worker ended while
    nobody watched, shard 2 was never started and shard 3 is done."""
    runner = FakeRunner(script={(1, 0): [lost("node gone")], (1, 1): [exited(0)]})
    job = Job(runner, {"a": 0, "b": 1, "c": 2})
    job.completes.update({(0, 1): {"a"}, (1, 1): {"b"}, (2, 0): {"c"}})
    await job.start(0, attempt=1)  # a previous scheduler process started these
    await job.start(1, attempt=0)
    await runner.cancel(ShardHandle(JOB, 1, 0, "fake-1-0"))  # ... and this one has ended
    runner.cancelled.clear()
    rows = {
        0: Row("pending", attempt=0),
        1: Row("started", attempt=0, handle="fake-1-0"),
        2: Row("pending"),
        3: Row("done", attempt=2, handle="fake-3-2"),
    }
    live = {h.shard: h for h in await runner.find_running(JOB)}

    resumed = resume_shards(JOB, rows, live)

    assert resumed.adopted == {0: ShardHandle(JOB, 0, 1, "fake-0-1")}
    assert resumed.to_record == [0]
    assert resumed.ended == {1: ShardHandle(JOB, 1, 0, "fake-1-0")}
    assert resumed.to_start == [2]
    # Watching them: the ended worker with a datum left is started again, the rest finish.
    handles = {**resumed.adopted, **resumed.ended, 2: await job.start(2)}
    await watch_shards(runner, handles, job.unfinished, job.calls(), attempts=3, poll_interval=1)
    assert job.restarts == [(1, 1)]
    assert sorted(n for n, _ in job.done) == [0, 1, 2]
    assert job.unfinished == {}
