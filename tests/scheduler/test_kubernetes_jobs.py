"""The scheduler end to end with ``TUSK_RUNNER=kubernetes``: a real kube-apiserver, the
scheduler's own token limited to the chart's Role, and the ``FakeKubelet`` playing the kubelet
(it runs ``tusk-worker`` from each pod's command, args and env against the real repo service).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.backing.kube import KubeApiServer
from tests.scheduler.conftest import Scheduler, scheduler_settings
from tests.scheduler.helpers import (
    EventLog,
    commit_files,
    executions,
    job_created,
    output_files,
    pid_alive,
    pipeline_spec,
    unique,
    wait_until,
)
from tests.scheduler.kube_fixtures import FakeKubelet, fake_kubelet, grant, new_namespace
from tusk.client import RepoClient
from tusk.events.memory import MemoryBus
from tusk.events.types import JOBS_TOPIC
from tusk_scheduler.app import create_app
from tusk_scheduler.context import build_context
from tusk_scheduler.runners.kubernetes import KubernetesRunner, label_value

# What the chart's Role grants the scheduler, and nothing more.
ROLE_POD_VERBS = ["create", "get", "list", "watch", "delete", "patch"]


@dataclass
class KubeScheduler:
    scheduler: Scheduler
    kube: KubeApiServer
    namespace: str
    kubelet: FakeKubelet

    def pods(self, job: str | None = None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.kube.api(
            "GET", f"/api/v1/namespaces/{self.namespace}/pods"
        )["items"]
        return [
            p
            for p in items
            if job is None or p["metadata"]["annotations"].get("tusk.io/job") == job
        ]

    async def apods(self, job: str | None = None) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.pods, job)


@pytest.fixture
async def kube_scheduler(
    kube: KubeApiServer, tmp_path: Path, repo_url: str
) -> AsyncIterator[KubeScheduler]:
    """The scheduler in-process with a KubernetesRunner built from its settings (as
    ``TUSK_RUNNER=kubernetes`` does), in a fresh namespace, with the scheduler's token and
    the chart-equivalent Role bound to it."""
    namespace = new_namespace(kube, "jobs")
    grant(kube, namespace, ROLE_POD_VERBS)
    kubeconfig = kube.write_kubeconfig(
        tmp_path / "kubeconfig", token=kube.scheduler_token, namespace=namespace
    )
    settings = scheduler_settings(
        tmp_path / "scheduler",
        repo_url,
        TUSK_RUNNER="kubernetes",
        # No trigger: specs come inline. (Not the default address, where another process's
        # trigger, knowing none of these pipelines, would have their warm pods deleted.)
        TUSK_TRIGGER_URL="http://127.0.0.1:9",
        # Warm pods listen on their pod IPs, 127.x.y.z here: a port nothing else likely has.
        TUSK_KUBE_WARM_PORT=str(random.randint(20000, 60000)),
        TUSK_KUBECONFIG=kubeconfig,
        TUSK_KUBE_NAMESPACE=namespace,
        TUSK_KUBE_WORKER_REPO_URL=repo_url,
    )
    bus = MemoryBus(partitions=3)
    # The "image": tusk-worker on the PATH. Everything else the worker gets is the pod's env.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    async with (
        fake_kubelet(kube, namespace, {"PATH": path}) as kubelet,
        build_context(settings, bus=bus) as context,
    ):
        assert isinstance(context.runner, KubernetesRunner)
        events = EventLog(await bus.subscribe([JOBS_TOPIC], group=None))
        transport = httpx.ASGITransport(app=create_app(context=context))
        async with httpx.AsyncClient(transport=transport, base_url="http://scheduler") as api:
            yield KubeScheduler(Scheduler(context, bus, events, api), kube, namespace, kubelet)


async def _setup(repos: RepoClient, files: dict[str, bytes]) -> tuple[str, str, str, str]:
    source, pipeline = unique("raw"), unique("kupper")
    await repos.create_repo(source)
    await repos.create_repo(pipeline)
    commit = await commit_files(repos, source, files)
    return source, pipeline, commit, (await repos.inspect_commit(source, commit)).global_id


async def test_a_job_runs_as_pods_and_its_pods_are_deleted_when_it_ends(
    kube_scheduler: KubeScheduler, repos: RepoClient, markers: Path, repo_url: str
) -> None:
    ks, scheduler = kube_scheduler, kube_scheduler.scheduler
    files = {f"/{c}.txt": f"content of {c}".encode() for c in "abcde"}
    source, pipeline, commit, global_id = await _setup(repos, files)
    # Pods made for the job and only for it (warm pods: test_kubernetes_warm.py).
    spec = pipeline_spec(pipeline, source, parallelism=2, markers=markers, autoscaling=True)
    created = job_created(spec, source, commit, global_id, version=4)

    # Every pod the job makes, as the apiserver showed it while the job ran.
    seen: dict[str, dict[str, Any]] = {}

    async def watch_pods() -> None:
        while True:
            for pod in await ks.apods(created.job):
                seen.setdefault(pod["metadata"]["name"], pod)
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch_pods())
    try:
        await scheduler.send(created)
        done = await scheduler.events.wait_for(created.job, "succeeded")
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher

    assert done["counts"] == {"total": 5, "processed": 5, "skipped": 0, "failed": 0, "recovered": 0}
    info = await repos.inspect_commit(pipeline, done["output_commit"])
    assert info.state == "finished"
    assert info.error is None
    assert info.global_id == global_id
    assert [(p.repo, p.commit) for p in info.provenance] == [(source, commit)]
    assert await output_files(repos, pipeline, done["output_commit"]) == {
        f"{path}.out": data.upper() for path, data in files.items()
    }
    assert executions(markers) == {f"{c}.txt": 1 for c in "abcde"}

    job = (await scheduler.api.get(f"/v1/jobs/{created.job}")).json()
    assert job["state"] == "success"
    assert [(s["shard"], s["state"], s["exit_code"]) for s in job["shards"]] == [
        (0, "done", 0),
        (1, "done", 0),
    ]
    # One pod per shard, each run by the fake kubelet, labelled for the job.
    assert sorted(seen) == sorted(s["handle"] for s in job["shards"])
    assert set(seen) <= ks.kubelet.started
    for pod in seen.values():
        labels = pod["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "tusk-scheduler"
        assert labels["tusk.io/job"] == label_value(created.job)
        assert labels["tusk.io/pipeline"] == label_value(pipeline)
        assert labels["tusk.io/pipeline-version"] == "4"
        assert labels["tusk.io/attempt"] == "0"
        assert pod["metadata"]["annotations"]["tusk.io/job"] == created.job
        assert pod["spec"]["restartPolicy"] == "Never"
        container = pod["spec"]["containers"][0]
        assert container["command"] == ["tusk-worker"]
        assert container["args"][container["args"].index("--job") + 1] == created.job
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["TUSK_REPO_URL"] == repo_url  # the worker reached the test's repo service
        assert env["MARKERS"] == str(markers)
    assert sorted(p["metadata"]["labels"]["tusk.io/shard"] for p in seen.values()) == ["0", "1"]

    async def pods_gone() -> bool:
        return not await ks.apods(created.job)

    await wait_until(pods_gone, 15, "the job's pods to be deleted")


async def test_a_deleted_pod_is_replaced_and_only_its_unfinished_datums_run_again(
    kube_scheduler: KubeScheduler, repos: RepoClient, markers: Path
) -> None:
    ks, scheduler = kube_scheduler, kube_scheduler.scheduler
    files = {f"/g{i}.txt": f"SLEEP=0.3 g{i}".encode() for i in range(4)}
    files["/g1.txt"] = b"SLEEPONCE=120 g1"  # hangs on its first run only
    source, pipeline, commit, global_id = await _setup(repos, files)
    spec = pipeline_spec(pipeline, source, parallelism=1, markers=markers)
    created = job_created(spec, source, commit, global_id)
    await scheduler.send(created)

    async def second_running() -> bool:
        return (markers / "g1.txt.pid").exists()

    async def first_recorded() -> bool:
        datums = (await scheduler.api.get(f"/v1/jobs/{created.job}/datums")).json()["items"]
        return any(d["inputs"][0]["path"] == "/g0.txt" and d["state"] == "success" for d in datums)

    await wait_until(second_running, 30, "the second datum to start")
    # Results are written in batches: until then a finished datum counts as unfinished.
    await wait_until(first_recorded, 30, "the first datum's result")
    orphan = int((markers / "g1.txt.pid").read_text())
    try:
        [pod] = await ks.apods(created.job)
        first = pod["metadata"]["name"]
        assert pod["metadata"]["labels"]["tusk.io/attempt"] == "0"
        # Deleted as `kubectl delete pod` would (default grace): the kubelet kills it.
        await asyncio.to_thread(
            ks.kube.api, "DELETE", f"/api/v1/namespaces/{ks.namespace}/pods/{first}"
        )

        done = await scheduler.events.wait_for(created.job, "succeeded")
        assert done["counts"]["processed"] == 4
        # g0 finished before the pod went: only g1 (interrupted) and what followed ran again.
        assert executions(markers) == {"g0.txt": 1, "g1.txt": 2, "g2.txt": 1, "g3.txt": 1}
        assert await output_files(repos, pipeline, done["output_commit"]) == {
            f"{p}.out": d.upper() for p, d in files.items()
        }
        job = (await scheduler.api.get(f"/v1/jobs/{created.job}")).json()
        assert job["shards"][0]["attempt"] == 1
        second = job["shards"][0]["handle"]
        assert second != first
        assert {first, second} <= ks.kubelet.started

        async def pods_gone() -> bool:
            return not await ks.apods(created.job)

        await wait_until(pods_gone, 15, "the job's pods to be deleted")
    finally:
        # A real kubelet takes the whole container down; the fake one kills the worker's
        # process group only, and the command runs in a session of its own.
        if pid_alive(orphan):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(orphan, signal.SIGKILL)
