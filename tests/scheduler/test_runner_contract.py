"""The ``Runner`` contract, run against every implementation: the local runner, and the
Kubernetes runner against a real kube-apiserver with a stand-in kubelet (tests/scheduler/
kube_fixtures.py) that runs the pod's command as a local process. The worker is replaced by a
stand-in that behaves as the job name says, so these tests need no repo service."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.scheduler.helpers import pid_alive
from tusk_scheduler.runners.base import Runner, ShardHandle, ShardLaunch, ShardStatus
from tusk_scheduler.runners.kubernetes import KubernetesRunner, PodTemplate
from tusk_scheduler.runners.local import REFILL_AFTER, LocalRunner

# Stands in for tusk-worker: `--job <behaviour>-<id>`; behaviours: ok, fail (exit 1),
# crash (exit 2), sleep (until stopped), noisy (prints, exits 0). With `--standby` alone it
# keeps tusk-worker's standby protocol: one JSON assignment on stdin, output to its log file,
# exit status to its exit file.
FAKE_WORKER = r"""
import json, os, signal, sys, time
args = sys.argv[1:]
exit_file = None
if args == ["--standby"]:
    line = sys.stdin.readline()
    if not line.strip():
        sys.exit(0)
    assignment = json.loads(line)
    args, exit_file = assignment["argv"], assignment["exit_file"]
    with open(assignment["log_file"], "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    def stopped(number, frame):
        open(exit_file, "w").write(str(128 + number))
        sys.exit(128 + number)
    signal.signal(signal.SIGTERM, stopped)
job = args[args.index("--job") + 1]
behaviour = job.split("-")[0]
print("fake worker for", job, "shard", args[args.index("--shard") + 1], flush=True)
if behaviour == "sleep":
    time.sleep(120)
code = {"ok": 0, "fail": 1, "crash": 2, "noisy": 0}[behaviour]
if exit_file:
    open(exit_file, "w").write(str(code))
sys.exit(code)
"""


@dataclass
class Harness:
    """A runner under test, and what the contract needs to know about its kind."""

    runner: Runner
    fresh: Callable[[], Runner]  # another instance, as after a scheduler restart
    started: Callable[[ShardHandle], Awaitable[bool]]  # the worker process is up
    gone: Callable[[ShardHandle], Awaitable[bool]]  # nothing of the worker is left
    leftovers: Callable[[str], Awaitable[bool]]  # the job left something behind


@pytest.fixture(params=["local", "local-warm", "kubernetes"])
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    made: list[Runner] = []
    if request.param.startswith("local"):

        def fresh_local() -> Runner:
            made.append(
                LocalRunner(
                    tmp_path / "workspace",
                    repo_url="http://127.0.0.1:9",
                    worker_command=[sys.executable, "-c", FAKE_WORKER],
                    cancel_grace=5,
                    warm_workers=2 if request.param == "local-warm" else 0,
                )
            )
            return made[-1]

        async def started_local(handle: ShardHandle) -> bool:
            return "fake worker" in await made[0].output(handle, 1000)

        async def gone_local(handle: ShardHandle) -> bool:
            return not pid_alive(int(handle.ref))

        async def leftovers_local(job: str) -> bool:
            return (tmp_path / "workspace" / job).exists()

        yield Harness(fresh_local(), fresh_local, started_local, gone_local, leftovers_local)
    else:
        from tests.scheduler.kube_fixtures import fake_kubelet, new_namespace

        kube = request.getfixturevalue("kube")
        namespace = new_namespace(kube, "contract")
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig", namespace=namespace)
        template = PodTemplate(
            repo_url="http://127.0.0.1:9",
            worker_command=(sys.executable, "-c", FAKE_WORKER),
        )

        def fresh_kube() -> Runner:
            made.append(KubernetesRunner(template, kubeconfig=kubeconfig, cancel_grace=5))
            return made[-1]

        def pods(job: str | None = None) -> list[dict[str, object]]:
            items = kube.api("GET", f"/api/v1/namespaces/{namespace}/pods")["items"]
            return [
                p
                for p in items
                if job is None or p["metadata"]["annotations"]["tusk.io/job"] == job
            ]

        async with fake_kubelet(kube, namespace) as kubelet:

            async def started_kube(handle: ShardHandle) -> bool:
                return handle.ref in kubelet.started and (await made[0].status(handle)).running

            async def gone_kube(handle: ShardHandle) -> bool:
                names = [p["metadata"]["name"] for p in await asyncio.to_thread(pods)]  # type: ignore[index]
                return handle.ref not in names and handle.ref not in kubelet.processes

            async def leftovers_kube(job: str) -> bool:
                return bool(await asyncio.to_thread(pods, job))

            yield Harness(fresh_kube(), fresh_kube, started_kube, gone_kube, leftovers_kube)
    for runner in made:
        await runner.close()


@pytest.fixture
def runner(harness: Harness) -> Runner:
    return harness.runner


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 30) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def launch(behaviour: str, shard: int = 0, attempt: int = 0, job: str | None = None) -> ShardLaunch:
    return ShardLaunch(
        job=job or f"{behaviour}-{uuid.uuid4().hex[:8]}",
        pipeline="p",
        shard=shard,
        attempt=attempt,
        output_repo="p",
        meta_commit="c" * 32,
    )


async def wait_started(harness: Harness, handle: ShardHandle, within: float = 30) -> None:
    """Until the worker has started (right after a start, a process may be between exec and
    its new command line; a pod may not be running yet)."""
    await eventually(lambda: harness.started(handle), within)


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


async def test_running_shards_are_found_by_job(harness: Harness, runner: Runner) -> None:
    job = f"sleep-{uuid.uuid4().hex[:8]}"
    first = await runner.start(launch("sleep", 0, job=job))
    second = await runner.start(launch("sleep", 1, attempt=2, job=job))
    other = await runner.start(launch("sleep"))
    for handle in (first, second, other):
        await wait_started(harness, handle)
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
    harness: Harness, runner: Runner
) -> None:
    """What a restarted scheduler does: a fresh runner (no children of its own) finds the
    running shard, watches it end, and reads how it ended."""
    job = f"sleep-{uuid.uuid4().hex[:8]}"
    handle = await runner.start(launch("sleep", job=job))
    await wait_started(harness, handle)
    fresh = harness.fresh()
    try:
        assert await fresh.find_running(job) == [handle]
        assert (await fresh.status(handle)).running
        await fresh.cancel(handle)
        await eventually(lambda: harness.gone(handle))
        assert (await fresh.status(handle)).state == "lost"
    finally:
        await runner.cancel(handle)
    quick = await runner.start(launch("fail"))
    await wait_ended(runner, quick)
    assert await fresh.status(quick) == ShardStatus("exited", 1)


@pytest.mark.parametrize("harness", ["local", "local-warm"], indirect=True)  # pids: local only
async def test_a_stale_handle_whose_pid_was_reused_is_not_mistaken(runner: Runner) -> None:
    handle = await runner.start(launch("ok"))
    await wait_ended(runner, handle)
    impostor = ShardHandle(handle.job, handle.shard, handle.attempt, ref="1")  # init's pid
    assert (await runner.status(impostor)) == ShardStatus("exited", 0)
    await runner.cancel(impostor)  # must not signal an unrelated process


async def test_cleanup_removes_what_the_job_left(harness: Harness, runner: Runner) -> None:
    handle = await runner.start(launch("ok"))
    await wait_ended(runner, handle)
    assert await harness.leftovers(handle.job)
    await runner.cleanup(handle.job)

    async def clean() -> bool:
        return not await harness.leftovers(handle.job)

    await eventually(clean, within=10)


@pytest.mark.parametrize("warm", [0, 2])
async def test_a_worker_that_exits_at_once_is_lost_not_retried_forever(
    tmp_path: Path, warm: int
) -> None:
    runner = LocalRunner(
        tmp_path / "workspace",
        repo_url="http://127.0.0.1:9",
        worker_command=[sys.executable, "-c", "import sys; sys.exit(3)"],
        warm_workers=warm,
    )
    try:
        await runner.warm_up()
        handle = await asyncio.wait_for(runner.start(launch("ok")), 30)
        status = await wait_ended(runner, handle)
        assert status.state == "lost"
        assert "without an exit status" in status.detail
    finally:
        await runner.close()


async def test_the_warm_pool_is_topped_up_once_starts_pause(tmp_path: Path) -> None:
    runner = LocalRunner(
        tmp_path / "workspace",
        repo_url="http://127.0.0.1:9",
        worker_command=[sys.executable, "-c", FAKE_WORKER],
        warm_workers=2,
    )
    try:
        await runner.warm_up()
        assert runner.standing_by == 2
        handles = [await runner.start(launch("ok", shard=n, job="ok-pool")) for n in range(3)]
        # Two were warm, the third started cold; no new worker competes with them yet.
        assert runner.standing_by == 0
        await asyncio.sleep(REFILL_AFTER / 2)
        assert runner.standing_by == 0
        for handle in handles:
            assert await wait_ended(runner, handle) == ShardStatus("exited", 0)

        async def refilled() -> bool:
            return runner.standing_by == 2

        await eventually(refilled, within=10)
    finally:
        await runner.close()
