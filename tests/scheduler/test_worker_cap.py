"""The local runner's worker cap holds across jobs: however many jobs start shards at once, the
worker processes alive at any moment (running, starting and warm ones) never outnumber
``max_workers``. Counted as processes (children of this test process, from /proc), sampled
all along by a thread, and at the moments where the cap is full."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.backing.common import wait_until
from tests.scheduler.conftest import scheduler_settings
from tests.scheduler.helpers import (
    EventLog,
    commit_files,
    envelope,
    job_created,
    pipeline_spec,
    unique,
)
from tusk.client import RepoClient
from tusk.events.memory import MemoryBus
from tusk.events.types import JOBS_TOPIC
from tusk_scheduler.context import build_context
from tusk_scheduler.runners.base import ShardLaunch
from tusk_scheduler.runners.local import LocalRunner

# Stands in for tusk-worker (standby protocol): takes its assignment from stdin, then holds its
# slot until the test opens its job's gate (a file), and exits 0.
GATED_WORKER = r"""
import json, os, sys, time
line = sys.stdin.readline()
if not line.strip():
    sys.exit(0)
assignment = json.loads(line)
args = assignment["argv"]
job = args[args.index("--job") + 1]
gate = os.path.join(os.environ["GATES"], job)
while not os.path.exists(gate):
    time.sleep(0.01)
open(assignment["exit_file"], "w").write("0")
"""

CAP = 3
JOBS = 3
SHARDS_PER_JOB = 3  # 9 shards at once against a cap of 3


def children() -> set[int]:
    """Processes whose parent is this test process and that have not ended (zombies aside)."""
    me = str(os.getpid())
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[1] == me and fields[0] not in ("Z", "X"):
            found.add(int(entry.name))
    return found


# Children from before the test (the repo service the scheduler tests share) are not workers.
_OTHERS: set[int] = set()


def live_children() -> int:
    """This process's children that are workers of the test."""
    return len(children() - _OTHERS)


@pytest.fixture(autouse=True)
def _others() -> Iterator[None]:
    _OTHERS.clear()
    _OTHERS.update(children())
    yield
    _OTHERS.clear()


class PeakSampler:
    """The most live child processes seen, sampled in a thread until stopped."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, live_children())

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def gates(tmp_path: Path) -> Path:
    path = tmp_path / "gates"
    path.mkdir()
    return path


def launch(job: str, shard: int) -> ShardLaunch:
    return ShardLaunch(
        job=job,
        pipeline=job,
        shard=shard,
        attempt=0,
        output_repo="out",
        meta_commit="m",
    )


@pytest.mark.parametrize("warm_workers", [0, 2])
async def test_many_jobs_never_run_more_workers_than_the_cap(
    tmp_path: Path, gates: Path, warm_workers: int
) -> None:
    runner = LocalRunner(
        tmp_path / "workspace",
        repo_url="http://127.0.0.1:9",
        worker_command=[sys.executable, "-c", GATED_WORKER],
        environ={**os.environ, "GATES": str(gates)},
        warm_workers=warm_workers,
        max_workers=CAP,
    )
    jobs = [f"job{j}" for j in range(JOBS)]
    try:
        with PeakSampler() as sampler:
            await runner.warm_up()
            starts = [
                asyncio.create_task(runner.start(launch(job, n)))
                for job in jobs
                for n in range(SHARDS_PER_JOB)
            ]

            def started() -> int:
                return sum(1 for s in starts if s.done())

            await asyncio.to_thread(wait_until, lambda: started() >= CAP, 120, "the first starts")
            # Every slot is held by a gated worker: the other starts wait, and no more run.
            assert started() == CAP
            assert live_children() <= CAP
            assert runner.live_workers() <= CAP
            # Open the gates job by job: ended workers free their slots for the waiting starts.
            for job in jobs:
                (gates / job).touch()
            await asyncio.wait_for(asyncio.gather(*starts), 120)
            handles = [s.result() for s in starts]

            async def all_exited() -> None:
                while True:
                    statuses = [await runner.status(h) for h in handles]
                    if all(s.state == "exited" for s in statuses):
                        return
                    await asyncio.sleep(0.05)

            await asyncio.wait_for(all_exited(), 120)
        assert {(await runner.status(h)).exit_code for h in handles} == {0}
        assert sampler.peak <= CAP, f"{sampler.peak} workers alive at once, over the cap {CAP}"
        assert sampler.peak >= CAP - 1  # the sampler saw the cap filled (it can fail)
    finally:
        for job in jobs:
            (gates / job).touch()
        await runner.close()


async def test_several_jobs_on_the_scheduler_stay_under_the_cap(
    tmp_path: Path, repo_url: str, markers: Path
) -> None:
    """The same cap, held by the scheduler itself: three jobs of four datums and parallelism 4
    at once, with real tusk-worker processes, never more than two workers alive."""
    cap = 2
    bus = MemoryBus(partitions=3)
    settings = scheduler_settings(
        tmp_path / "scheduler", repo_url, TUSK_SCHEDULER_MAX_LOCAL_WORKERS=cap
    )
    async with RepoClient(repo_url) as repos:
        created = []
        for _ in range(3):
            source, pipeline = unique("raw"), unique("cap")
            await repos.create_repo(source)
            await repos.create_repo(pipeline)
            files = {f"/{c}.txt": c.encode() for c in "abcd"}
            commit = await commit_files(repos, source, files)
            info = await repos.inspect_commit(source, commit)
            spec = pipeline_spec(pipeline, source, parallelism=4, markers=markers)
            created.append(job_created(spec, source, commit, info.global_id))
        with PeakSampler() as sampler:
            async with build_context(settings, bus=bus) as _context:
                events = EventLog(await bus.subscribe([JOBS_TOPIC], group=None))
                await bus.publish([envelope(c) for c in created])
                for c in created:
                    done = await events.wait_for(c.job, "succeeded")
                    assert done["counts"]["processed"] == 4
        assert sampler.peak <= cap, f"{sampler.peak} workers alive at once, over the cap {cap}"
        assert sampler.peak >= 1


async def test_the_warm_pool_refills_once_capped_workers_end(tmp_path: Path, gates: Path) -> None:
    """Workers that filled the cap kept the warm pool empty; once they end, the pool is topped
    up again, so the next job's shard starts on a warm worker, not a cold one."""
    runner = LocalRunner(
        tmp_path / "workspace",
        repo_url="http://127.0.0.1:9",
        worker_command=[sys.executable, "-c", GATED_WORKER],
        environ={**os.environ, "GATES": str(gates)},
        warm_workers=2,
        max_workers=2,
    )
    try:
        await runner.warm_up()
        handles = [await runner.start(launch("first", n)) for n in range(2)]
        assert runner.standing_by == 0  # the cap is full of running workers
        (gates / "first").touch()

        async def ended_and_refilled() -> None:
            while True:
                statuses = [await runner.status(h) for h in handles]
                if all(s.state == "exited" for s in statuses) and runner.standing_by == 2:
                    return
                await asyncio.sleep(0.05)

        await asyncio.wait_for(ended_and_refilled(), 120)
        assert live_children() == 2  # the two warm ones, within the cap
    finally:
        (gates / "first").touch()
        await runner.close()
