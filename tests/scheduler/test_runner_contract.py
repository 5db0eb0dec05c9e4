"""The ``Runner`` contract, run against every implementation (the Kubernetes runner joins the
parameter list when it exists). The worker is replaced by a stand-in that behaves as the job
name says, so these tests need no repo service."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.scheduler.helpers import pid_alive
from tusk_scheduler.runners.base import Runner, ShardHandle, ShardLaunch, ShardStatus
from tusk_scheduler.runners.local import LocalRunner

# Stands in for tusk-worker: `--job <behaviour>-<id>`; behaviours: ok, fail (exit 1),
# crash (exit 2), sleep (until stopped), noisy (prints, exits 0).
FAKE_WORKER = r"""
import sys, time
job = sys.argv[sys.argv.index("--job") + 1]
behaviour = job.split("-")[0]
print("fake worker for", job, "shard", sys.argv[sys.argv.index("--shard") + 1], flush=True)
if behaviour == "sleep":
    time.sleep(120)
sys.exit({"ok": 0, "fail": 1, "crash": 2, "noisy": 0}[behaviour])
"""


@pytest.fixture(params=["local"])
async def runner(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Runner]:
    made = LocalRunner(
        tmp_path / "workspace",
        repo_url="http://127.0.0.1:9",
        worker_command=[sys.executable, "-c", FAKE_WORKER],
        cancel_grace=5,
    )
    yield made
    await made.close()


def launch(behaviour: str, shard: int = 0, attempt: int = 0, job: str | None = None) -> ShardLaunch:
    return ShardLaunch(
        job=job or f"{behaviour}-{uuid.uuid4().hex[:8]}",
        pipeline="p",
        shard=shard,
        attempt=attempt,
        output_repo="p",
        meta_commit="c" * 32,
    )


async def wait_started(runner: Runner, handle: ShardHandle, within: float = 30) -> None:
    """Until the worker has printed its first line (right after a start, a process may be
    between exec and its new command line)."""
    deadline = time.monotonic() + within
    while "fake worker" not in await runner.output(handle, 1000):
        assert time.monotonic() < deadline, "the shard did not start"
        await asyncio.sleep(0.02)


async def wait_ended(runner: Runner, handle: ShardHandle, within: float = 30) -> ShardStatus:
    deadline = time.monotonic() + within
    while (status := await runner.status(handle)).running:
        assert time.monotonic() < deadline, "the shard did not end"
        await asyncio.sleep(0.05)
    return status


@pytest.mark.parametrize(("behaviour", "code"), [("ok", 0), ("fail", 1), ("crash", 2)])
async def test_a_shard_runs_to_its_exit_status(runner: Runner, behaviour: str, code: int) -> None:
    handle = await runner.start(launch(behaviour))
    status = await wait_ended(runner, handle)
    assert status == ShardStatus("exited", code)
    assert "fake worker for" in await runner.output(handle, 1000)


async def test_running_shards_are_found_by_job(runner: Runner) -> None:
    job = f"sleep-{uuid.uuid4().hex[:8]}"
    first = await runner.start(launch("sleep", 0, job=job))
    second = await runner.start(launch("sleep", 1, attempt=2, job=job))
    other = await runner.start(launch("sleep"))
    for handle in (first, second, other):
        await wait_started(runner, handle)
    try:
        assert (await runner.status(first)).running
        assert await runner.find_running(job) == [first, second]
    finally:
        for handle in (first, second, other):
            await runner.cancel(handle)
    assert not (await runner.status(first)).running
    assert await runner.find_running(job) == []


async def test_cancel_stops_a_shard_and_is_idempotent(runner: Runner) -> None:
    handle = await runner.start(launch("sleep"))
    await runner.cancel(handle)
    status = await runner.status(handle)
    assert status.state == "lost"
    await runner.cancel(handle)  # gone already: no error


async def test_a_new_runner_adopts_what_an_earlier_one_started(
    runner: Runner, tmp_path: Path
) -> None:
    """What a restarted scheduler does: a fresh runner (no children of its own) finds the
    running shard, watches it end, and reads how it ended."""
    job = f"sleep-{uuid.uuid4().hex[:8]}"
    handle = await runner.start(launch("sleep", job=job))
    await wait_started(runner, handle)
    fresh = LocalRunner(
        tmp_path / "workspace",
        repo_url="http://127.0.0.1:9",
        worker_command=[sys.executable, "-c", FAKE_WORKER],
    )
    try:
        assert await fresh.find_running(job) == [handle]
        assert (await fresh.status(handle)).running
        await fresh.cancel(handle)
        assert not pid_alive(int(handle.ref))
        assert (await fresh.status(handle)).state == "lost"
    finally:
        await runner.cancel(handle)
    quick = await runner.start(launch("fail"))
    await wait_ended(runner, quick)
    assert await fresh.status(quick) == ShardStatus("exited", 1)


async def test_a_stale_handle_whose_pid_was_reused_is_not_mistaken(runner: Runner) -> None:
    handle = await runner.start(launch("ok"))
    await wait_ended(runner, handle)
    impostor = ShardHandle(handle.job, handle.shard, handle.attempt, ref="1")  # init's pid
    assert (await runner.status(impostor)) == ShardStatus("exited", 0)
    await runner.cancel(impostor)  # must not signal an unrelated process


async def test_cleanup_removes_the_job_scratch_space(runner: Runner, tmp_path: Path) -> None:
    handle = await runner.start(launch("ok"))
    await wait_ended(runner, handle)
    assert (tmp_path / "workspace" / handle.job).exists()
    await runner.cleanup(handle.job)
    assert not (tmp_path / "workspace" / handle.job).exists()
