"""The Kubernetes runner's speed targets (issue 6), each against raw kubernetes-asyncio in the
same run.

    .venv/bin/python -m loadtest.bench_kube [--runs N] [--pods N] [--probes N] [--json OUT]

Starts a real kube-apiserver + etcd (``tests.backing.kube``, RBAC on; no kubelet, so pods stay
Pending unless their status is patched) and measures:

1. start-up: one job of 100 datums with ``parallelism_spec: {constant: 100}`` through the real
   scheduler (repo service as a uvicorn process, ``JobCreated`` on a MemoryBus, a
   ``KubernetesRunner`` built from ``TUSK_RUNNER=kubernetes`` settings with the scheduler's
   token and the chart's Role). Clocks: from publishing ``job.created`` and from the runner's
   first ``start()`` call, until a watch (admin token, same process) has seen all 100 pods
   ADDED. Baseline: 100 pods of the same shape created with raw kubernetes-asyncio (scheduler
   token), one after another and all at once, timed the same way.
2. the watch with 1,000 pods: a separate process (``loadtest.kube_watcher``) holds only a
   connected ``KubernetesRunner`` (its watch and cache); its resident memory before the pods
   exist (baseline) and once its cache holds all 1,000.
3. reaction: one pod at a time is patched ``Succeeded`` (admin token, from this process); the
   watching process polls ``runner.status()`` every millisecond until it reports the change
   and stamps the time. Baseline: a raw kubernetes-asyncio watch in this process, stamping the
   arrival of the same MODIFIED event. Both use ``time.time_ns`` on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python loadtest/bench_kube.py`: make the root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import structlog
from kubernetes_asyncio import client
from kubernetes_asyncio.watch import Watch

from loadtest.report import Figure, Report, environment, percentile, print_table, say
from tests.backing.common import free_port
from tests.backing.kube import K8S_VERSION, KubeApiServer, ensure_installed
from tests.scheduler.conftest import clean_env, start_server, wait_healthy
from tests.scheduler.helpers import commit_files, envelope, job_created, pipeline_spec
from tusk.client import RepoClient
from tusk.events.memory import MemoryBus
from tusk.events.types import JobCancel
from tusk_scheduler.config import SchedulerSettings
from tusk_scheduler.context import build_context
from tusk_scheduler.runners.base import ShardHandle, ShardLaunch
from tusk_scheduler.runners.kubernetes import (
    KubernetesRunner,
    PodTemplate,
    load_api_client,
    pod_manifest,
    pod_name,
)

ROLE_POD_VERBS = ["create", "get", "list", "watch", "delete", "patch"]
# Workers would get their token from this Secret (the pods never start: no kubelet).
TEMPLATE = PodTemplate(repo_url="http://repo.tusk:8081", token_secret="tusk-worker-token")


def grant(kube: KubeApiServer, namespace: str) -> None:
    from tests.scheduler.kube_fixtures import grant as grant_role

    grant_role(kube, namespace, ROLE_POD_VERBS)


def namespace(kube: KubeApiServer, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    kube.create_namespace(name)
    grant(kube, name)
    return name


def launch(job: str, shard: int) -> ShardLaunch:
    """A shard as the scheduler launches one (env, resources, a version): a realistic pod."""
    return ShardLaunch(
        job=job,
        pipeline="bench",
        shard=shard,
        attempt=0,
        output_repo="bench",
        meta_commit="c" * 32,
        image="registry.example/bench:1",
        resource_requests={"cpu": "100m", "memory": "128Mi"},
        resource_limits={"memory": "256Mi"},
        env={"MODE": "bench", "MARKERS": "/tmp/markers"},
        version=1,
    )


class PodsSeen:
    """A raw watch of one namespace (admin token): when each pod was first seen ADDED."""

    def __init__(self, core: client.CoreV1Api, ns: str) -> None:
        self.core, self.ns = core, ns
        self.added: dict[str, float] = {}
        self.changed: dict[str, int] = {}  # pod -> time_ns its Succeeded MODIFIED arrived
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def _run(self) -> None:
        listed = await self.core.list_namespaced_pod(self.ns, _preload_content=False)
        async with listed:
            version = (await listed.json())["metadata"]["resourceVersion"]
        while True:
            stream = Watch().stream(
                self.core.list_namespaced_pod,
                self.ns,
                resource_version=version,
                timeout_seconds=600,
            )
            async with stream:
                self._ready.set()
                async for event in stream:
                    now = time.monotonic()
                    raw = event["raw_object"]
                    name = raw["metadata"]["name"]
                    version = raw["metadata"]["resourceVersion"]
                    if event["type"] == "ADDED":
                        self.added.setdefault(name, now)
                    elif (raw.get("status") or {}).get("phase") == "Succeeded":
                        self.changed.setdefault(name, time.time_ns())

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())
        await self._ready.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def all_added(self, names: set[str], within: float = 120) -> float:
        """When the last of ``names`` was seen (monotonic)."""
        deadline = time.monotonic() + within
        while not names <= self.added.keys():
            if time.monotonic() > deadline:
                missing = len(names - self.added.keys())
                raise AssertionError(f"{missing} pods never seen")
            await asyncio.sleep(0.005)
        return max(self.added[n] for n in names)


# --- 1. starting 100 shard pods -------------------------------------------------------------


async def raw_creates(
    core: client.CoreV1Api, seen: PodsSeen, ns: str, count: int, concurrent: bool
) -> float:
    job = uuid.uuid4().hex
    manifests = [pod_manifest(launch(job, i), TEMPLATE) for i in range(count)]
    names = {m["metadata"]["name"] for m in manifests}

    async def create(manifest: dict[str, Any]) -> None:
        response = await core.create_namespaced_pod(ns, manifest, _preload_content=False)
        async with response:
            assert response.status == 201, await response.text()

    started = time.monotonic()
    if concurrent:
        await asyncio.gather(*(create(m) for m in manifests))
    else:
        for manifest in manifests:
            await create(manifest)
    return await seen.all_added(names) - started


async def bench_startup(report: Report, kube: KubeApiServer, work: Path, runs: int) -> None:
    shards = 100
    ns = namespace(kube, "bench-start")
    admin_config = kube.write_kubeconfig(work / "admin", namespace=ns)
    sched_config = kube.write_kubeconfig(
        work / "scheduler", token=kube.scheduler_token, namespace=ns
    )
    port = free_port()
    repo_url = f"http://127.0.0.1:{port}"
    data = work / "repo"
    data.mkdir()
    server = start_server(
        "tusk_repo.app:create_app", port, clean_env(TUSK_DATA_DIR=str(data)), data / "log"
    )
    admin, _ = await load_api_client(admin_config)
    sched, _ = await load_api_client(sched_config)
    core, sched_core = client.CoreV1Api(admin), client.CoreV1Api(sched)
    seen = PodsSeen(core, ns)
    from_created: list[float] = []
    from_start: list[float] = []
    try:
        await asyncio.to_thread(wait_healthy, repo_url, server, "the repo service")
        await seen.start()
        # The scheduler's defaults (poll interval etc.), as `TUSK_RUNNER=kubernetes` runs it.
        settings = SchedulerSettings(  # type: ignore[call-arg]
            data_dir=work / "sched",
            TUSK_REPO_URL=repo_url,
            TUSK_RUNNER="kubernetes",
            TUSK_KUBECONFIG=sched_config,
            TUSK_KUBE_NAMESPACE=ns,
        )
        bus = MemoryBus(partitions=3)
        async with RepoClient(repo_url) as repos, build_context(settings, bus=bus) as context:
            runner = context.runner
            assert isinstance(runner, KubernetesRunner)
            await runner.connect()
            first_start: list[float] = []
            original = runner.start

            async def timed_start(shard: ShardLaunch) -> ShardHandle:
                if not first_start:
                    first_start.append(time.monotonic())
                return await original(shard)

            runner.start = timed_start  # type: ignore[method-assign]
            for run in range(runs):
                source, pipeline = f"raw-{uuid.uuid4().hex[:8]}", f"wide-{uuid.uuid4().hex[:8]}"
                await repos.create_repo(source)
                await repos.create_repo(pipeline)
                commit = await commit_files(
                    repos, source, {f"/f{i:03}.txt": b"x" for i in range(shards)}
                )
                info = await repos.inspect_commit(source, commit)
                spec = pipeline_spec(pipeline, source, parallelism=shards)
                created = job_created(spec, source, commit, info.global_id)
                names = {
                    pod_name(replace(launch(created.job, i), pipeline=pipeline))
                    for i in range(shards)
                }
                first_start.clear()
                started = time.monotonic()
                await bus.publish([envelope(created)])
                last = await seen.all_added(names)
                from_created.append(last - started)
                from_start.append(last - first_start[0])
                say(
                    f"  run {run + 1}: {shards} pods {from_created[-1]:.3f} s after job.created, "
                    f"{from_start[-1]:.3f} s after the first start(); job.created → first "
                    f"start() {first_start[0] - started:.3f} s"
                )
                await bus.publish(
                    [envelope(JobCancel(job=created.job, pipeline=pipeline, reason="bench"))]
                )

                async def gone(job: str = created.job) -> bool:
                    response = await core.list_namespaced_pod(
                        ns, label_selector="app.kubernetes.io/managed-by=tusk-scheduler"
                    )
                    return not [
                        p for p in response.items if p.metadata.annotations["tusk.io/job"] == job
                    ]

                await until(gone, 60)
        sequential = [await raw_creates(sched_core, seen, ns, shards, False) for _ in range(runs)]
        concurrent = [await raw_creates(sched_core, seen, ns, shards, True) for _ in range(runs)]
    finally:
        await seen.stop()
        await admin.close()
        await sched.close()
        server.terminate()
        server.wait(timeout=30)
    value = statistics.median(from_created)
    base = statistics.median(sequential)
    report.add(
        Figure(
            f"{shards} shard pods exist, from job.created (median of {runs})",
            value,
            "s",
            "≤ 2 s",
            value <= 2,
            f"{shards} raw sequential creates",
            base,
            value / base,
        )
    )
    report.add(
        Figure(
            f"{shards} shard pods exist, from the runner's first start() (median of {runs})",
            statistics.median(from_start),
            "s",
            "-",
            None,
            f"{shards} raw sequential creates",
            base,
            statistics.median(from_start) / base,
        )
    )
    report.details["startup"] = {
        "from_job_created_s": from_created,
        "from_first_start_s": from_start,
        "raw_sequential_s": sequential,
        "raw_concurrent_s": concurrent,
    }
    say(f"  raw creates: sequential {sequential}, concurrent {concurrent}")


async def until(check: Callable[[], Awaitable[bool]], within: float) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.1)


# --- 2 and 3. the watch with 1,000 pods (the watching process) ------------------------------


class Watcher:
    def __init__(self, kubeconfig: Path, ns: str) -> None:
        self.args = [sys.executable, "-m", "loadtest.kube_watcher", str(kubeconfig), ns]
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            *self.args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=Path(__file__).resolve().parents[1],
        )

    async def send(self, *words: object) -> None:
        assert self.process is not None
        assert self.process.stdin is not None
        self.process.stdin.write((" ".join(map(str, words)) + "\n").encode())
        await self.process.stdin.drain()

    async def read(self, within: float = 120) -> list[str]:
        assert self.process is not None
        assert self.process.stdout is not None
        raw = await asyncio.wait_for(self.process.stdout.readline(), within)
        if not raw:
            raise RuntimeError("the watching process ended")
        return raw.decode().split()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(Exception):
                await self.send("quit")
                await asyncio.wait_for(self.process.wait(), 10)
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()


async def bench_watch(
    report: Report, kube: KubeApiServer, work: Path, pods: int, probes: int
) -> None:
    ns = namespace(kube, "bench-watch")
    admin_config = kube.write_kubeconfig(work / "admin-watch", namespace=ns)
    sched_config = kube.write_kubeconfig(
        work / "scheduler-watch", token=kube.scheduler_token, namespace=ns
    )
    admin, _ = await load_api_client(admin_config)
    core = client.CoreV1Api(admin)
    watch = Watcher(sched_config, ns)
    seen = PodsSeen(core, ns)
    try:
        await watch.start()
        before = int((await watch.read())[1])
        say(f"  watching process before the pods: {before / 2**20:.1f} MiB")
        job = uuid.uuid4().hex
        manifests = [pod_manifest(launch(job, i), TEMPLATE) for i in range(pods)]
        limit = asyncio.Semaphore(32)

        async def create(manifest: dict[str, Any]) -> None:
            async with limit:
                response = await core.create_namespaced_pod(ns, manifest, _preload_content=False)
                async with response:
                    assert response.status == 201, await response.text()

        started = time.monotonic()
        await asyncio.gather(*(create(m) for m in manifests))
        say(f"  created {pods} pods in {time.monotonic() - started:.1f} s")
        await watch.send("count", pods)
        answer = await watch.read()
        after, synced = int(answer[1]), float(answer[2])
        say(f"  watching process with {pods} pods: {after / 2**20:.1f} MiB")
        await seen.start()
        reaction: list[float] = []
        raw: list[float] = []
        names = [m["metadata"]["name"] for m in manifests][:probes]
        for name in names:
            await watch.send("probe", name)
            assert (await watch.read())[0] == "ready"
            await asyncio.sleep(0.01)
            patched = time.time_ns()
            await asyncio.to_thread(
                kube.patch_pod_status,
                ns,
                name,
                {
                    "phase": "Succeeded",
                    "containerStatuses": [
                        {
                            "name": "worker",
                            "image": "img",
                            "imageID": "",
                            "ready": False,
                            "restartCount": 0,
                            "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
                        }
                    ],
                },
            )
            answer = await watch.read()
            reaction.append((int(answer[1]) - patched) / 1e6)
            for _ in range(200):
                if name in seen.changed:
                    break
                await asyncio.sleep(0.005)
            raw.append((seen.changed[name] - patched) / 1e6)
        await watch.send("quit")
        final = int((await watch.read())[1])
    finally:
        await seen.stop()
        await watch.stop()
        await admin.close()
    report.add(
        Figure(
            f"watching process RSS with {pods:,} pods",
            after / 2**20,
            "MiB",
            "< 200 MB",
            after < 200e6,
            "same process before the pods",
            before / 2**20,
            after / before,
        )
    )
    p99, base = percentile(reaction, 99), percentile(raw, 99)
    report.add(
        Figure(
            f"phase change → runner.status(), p99 of {len(reaction)} ({pods:,} pods watched)",
            p99,
            "ms",
            "≤ 100 ms",
            p99 <= 100,
            "raw watch event arrival, p99",
            base,
            p99 / base if base else None,
        )
    )
    report.details["watch"] = {
        "rss_before_bytes": before,
        "rss_after_bytes": after,
        "rss_at_exit_bytes": final,
        "cache_synced_s": synced,
        "reaction_ms": {p: percentile(reaction, p) for p in (50, 90, 99, 100)},
        "raw_ms": {p: percentile(raw, p) for p in (50, 90, 99, 100)},
    }
    say(
        "  reaction p50/p90/p99/max: "
        + " / ".join(f"{percentile(reaction, p):.1f}" for p in (50, 90, 99, 100))
        + " ms; raw watch: "
        + " / ".join(f"{percentile(raw, p):.1f}" for p in (50, 90, 99, 100))
        + " ms"
    )


# --- the run ----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def apiserver() -> AsyncIterator[KubeApiServer]:
    await asyncio.to_thread(ensure_installed)
    server = KubeApiServer(authorization_mode="RBAC")
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


async def run(work: Path, runs: int, pods: int, probes: int) -> Report:
    report = Report()
    report.environment = environment(kubernetes=K8S_VERSION)
    say("starting kube-apiserver + etcd")
    async with apiserver() as kube:
        say("1. starting 100 shard pods for one job")
        await bench_startup(report, kube, work, runs)
        say(f"2/3. the runner's watch with {pods:,} pods")
        await bench_watch(report, kube, work, pods, probes)
    report.environment["load_average_after"] = os.getloadavg()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="jobs of 100 shards (default 3)")
    parser.add_argument("--pods", type=int, default=1000, help="pods watched (default 1,000)")
    parser.add_argument("--probes", type=int, default=200, help="phase changes timed")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the results here")
    args = parser.parse_args(argv)
    # The scheduler logs each pod it creates: keep the output to the figures.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tusk-bench-kube-") as work:
        report = asyncio.run(run(Path(work), args.runs, args.pods, args.probes))
    report.details["total_seconds"] = time.monotonic() - started
    print()
    print_table(
        report,
        f"kube-apiserver {report.environment['kubernetes']} + etcd (one node, RBAC)",
        decimals=3,
    )
    say(f"done in {report.details['total_seconds']:.0f} s")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "environment": report.environment,
                    "figures": [asdict(f) for f in report.figures],
                    "details": report.details,
                },
                indent=2,
                default=str,
            )
        )
    return 0 if all(f.met is not False for f in report.figures) else 1


if __name__ == "__main__":
    sys.exit(main())
