"""Warm worker pods on the Kubernetes runner: a pipeline that keeps its workers gets a pod made
ahead, which the next job's shard is handed to. Real kube-apiserver, the chart's Role, and the
``FakeKubelet`` (a pod IP of its own per pod, the downward API's ``status.podIP``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import Any

import httpx
import pytest

from tests.scheduler.helpers import job_created, output_files, pipeline_spec, wait_until
from tests.scheduler.kube_fixtures import FakeKubelet
from tests.scheduler.test_kubernetes_jobs import KubeScheduler, _setup
from tests.scheduler.test_kubernetes_jobs import kube_scheduler as _kube_scheduler
from tusk.client import RepoClient
from tusk.pipelines import PipelineSpec
from tusk_scheduler.domain.running import pipeline_launch
from tusk_scheduler.runners.kubernetes import KubernetesRunner
from tusk_scheduler.runners.kubernetes.warm import KEY_ENV, PORT_ENV, WARM_HASH_LABEL, warm_for

kube_scheduler = _kube_scheduler  # the scheduler with the chart's Role, on the fake kubelet

FILES = {f"/{c}.txt": f"content of {c}".encode() for c in "ab"}


def runner_of(ks: KubeScheduler) -> KubernetesRunner:
    runner = ks.scheduler.context.runner
    assert isinstance(runner, KubernetesRunner)
    return runner


def env_of(pod: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in pod["spec"]["containers"][0]["env"]}


async def warm_pods(ks: KubeScheduler, pipeline: str) -> list[dict[str, Any]]:
    return [
        p
        for p in await ks.apods()
        if warm_for(p) == pipeline and not p["metadata"].get("deletionTimestamp")
    ]


async def listening_warm_pod(ks: KubeScheduler, pipeline: str) -> dict[str, Any]:
    """The pipeline's one warm pod, once its worker answers on the pod's address."""
    found: list[dict[str, Any]] = []

    async def warm() -> bool:
        pods = await warm_pods(ks, pipeline)
        ip = pods[0]["status"].get("podIP") if len(pods) == 1 else None
        if ip is None:
            return False
        try:
            async with httpx.AsyncClient(timeout=5) as http:
                answer = await http.get(f"http://{ip}:{env_of(pods[0])[PORT_ENV]}/healthz")
        except httpx.ConnectError:
            return False
        found[:] = pods
        return answer.status_code == 200

    await wait_until(warm, 60, f"a warm pod of {pipeline} to listen")
    return found[0]


async def run_job(
    ks: KubeScheduler, repos: RepoClient, spec: dict[str, Any], source: str, version: int = 1
) -> tuple[dict[str, Any], dict[str, Any], dict[str, bytes]]:
    """One job of ``spec`` on a new commit of ``source`` (adding files to those of the jobs
    before it): its succeeded event, its detail, and the outputs expected of it."""
    files = {f"/{version}-{path[1:]}": data for path, data in FILES.items()}
    commit = await repos.start_commit(source, "master")
    for path, data in files.items():
        await repos.put_file(source, commit.id, path, data)
    await repos.finish_commit(source, commit.id)
    global_id = (await repos.inspect_commit(source, commit.id)).global_id
    created = job_created(spec, source, commit.id, global_id, version=version)
    await ks.scheduler.send(created)
    done = await ks.scheduler.events.wait_for(created.job, "succeeded")
    job = (await ks.scheduler.api.get(f"/v1/jobs/{created.job}")).json()
    expected = {
        f"/{v}-{path[1:]}.out": data.upper()
        for v in range(1, version + 1)
        for path, data in FILES.items()
    }
    return done, job, expected


async def test_the_next_job_runs_in_the_warm_pod_the_first_left(
    kube_scheduler: KubeScheduler, repos: RepoClient
) -> None:
    ks = kube_scheduler
    source, pipeline, _, _ = await _setup(repos, {})
    spec = pipeline_spec(pipeline, source, parallelism=1)
    await run_job(ks, repos, spec, source)

    warm = await listening_warm_pod(ks, pipeline)
    name, ip = warm["metadata"]["name"], warm["status"]["podIP"]
    env = env_of(warm)
    assert warm["spec"]["containers"][0]["args"] == ["--listen"]
    assert "tusk.io/job" not in warm["metadata"]["labels"]
    assert "TUSK_TOKEN" not in env  # the job's credential comes with its assignment
    # Without its key nobody can hand it a shard; and a refused try leaves it waiting.
    async with httpx.AsyncClient(timeout=5) as http:
        refused = await http.post(
            f"http://{ip}:{env[PORT_ENV]}/v1/assignment",
            json={"argv": ["--job", "x"]},
            headers={"Authorization": f"Bearer {env[KEY_ENV]}x"},
        )
    assert refused.status_code == 403

    done, job, expected = await run_job(ks, repos, spec, source, version=2)
    # The warm pod, made before this job existed, ran its shard: no pod was made for it.
    assert [s["handle"] for s in job["shards"]] == [name]
    assert name in ks.kubelet.started
    assert done["counts"]["processed"] == 2
    assert await output_files(repos, pipeline, done["output_commit"]) == expected

    async def replaced() -> bool:
        pods = await warm_pods(ks, pipeline)
        return [p["metadata"]["name"] for p in pods] not in ([], [name])

    await wait_until(replaced, 30, "a new warm pod for the next job")

    async def job_pods_gone() -> bool:
        return not await ks.apods(job["id"])

    await wait_until(job_pods_gone, 15, "the handed-over pod to be deleted with its job")


async def test_a_changed_spec_replaces_the_warm_pod(
    kube_scheduler: KubeScheduler, repos: RepoClient
) -> None:
    ks = kube_scheduler
    source, pipeline, _, _ = await _setup(repos, {})
    spec = pipeline_spec(pipeline, source, parallelism=1)
    await run_job(ks, repos, spec, source)
    old = await listening_warm_pod(ks, pipeline)

    # Another env: the pods of the pipeline's shards are not what the warm pod is.
    spec["transform"]["env"] = {"MODE": "new"}
    done, job, expected = await run_job(ks, repos, spec, source, version=2)
    assert [s["handle"] for s in job["shards"]] != [old["metadata"]["name"]]
    assert await output_files(repos, pipeline, done["output_commit"]) == expected

    new = await listening_warm_pod(ks, pipeline)
    assert new["metadata"]["name"] != old["metadata"]["name"]
    assert new["metadata"]["labels"][WARM_HASH_LABEL] != old["metadata"]["labels"][WARM_HASH_LABEL]
    assert env_of(new)["MODE"] == "new"

    # The scheduler's look at the pipelines finds it as it is: its warm pod stays (the look
    # makes the pod from the spec as a job's start does). Then it is deleted: its pod goes.
    runner = runner_of(ks)
    as_listed = pipeline_launch(PipelineSpec.model_validate(spec), pipeline, pipeline)
    await runner.prune_warm({pipeline: as_listed})
    assert [p["metadata"]["name"] for p in await warm_pods(ks, pipeline)] == [
        new["metadata"]["name"]
    ]
    await runner.prune_warm({})

    async def none_left() -> bool:
        return not await warm_pods(ks, pipeline)

    await wait_until(none_left, 15, "the deleted pipeline's warm pod to be deleted")


async def test_an_autoscaling_pipeline_gets_no_warm_pod(
    kube_scheduler: KubeScheduler, repos: RepoClient
) -> None:
    ks = kube_scheduler
    source, pipeline, _, _ = await _setup(repos, {})
    spec = pipeline_spec(pipeline, source, parallelism=1, autoscaling=True)
    done, _, _ = await run_job(ks, repos, spec, source)
    assert done["counts"]["processed"] == 2
    # No warm pod was even asked for (the runner asks once it sees a shard's worker end, which
    # it has: the job succeeded), and there is none.
    assert pipeline not in runner_of(ks).warm._refills
    assert not await warm_pods(ks, pipeline)


async def _refusing(host: str, port: int) -> asyncio.Server:
    """Something on the warm pod's address that answers every request with a 500."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    return await asyncio.start_server(answer, host, port)


def _kill_worker(kubelet: FakeKubelet, pod: str) -> None:
    process, _ = kubelet.processes[pod]
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@pytest.mark.parametrize("how", ["refuses", "died"])
async def test_a_warm_pod_that_fails_its_shard_gives_way_to_a_new_pod(
    kube_scheduler: KubeScheduler, repos: RepoClient, how: str
) -> None:
    ks = kube_scheduler
    source, pipeline, _, _ = await _setup(repos, {})
    spec = pipeline_spec(pipeline, source, parallelism=1)
    await run_job(ks, repos, spec, source)
    warm = await listening_warm_pod(ks, pipeline)
    name = warm["metadata"]["name"]
    _kill_worker(ks.kubelet, name)
    server = None
    if how == "refuses":
        server = await _refusing(warm["status"]["podIP"], int(env_of(warm)[PORT_ENV]))
    else:

        async def failed() -> bool:
            pods = [p for p in await ks.apods() if p["metadata"]["name"] == name]
            return not pods or pods[0]["status"].get("phase") == "Failed"

        await wait_until(failed, 15, "the kubelet to report the warm pod failed")
    try:
        done, job, expected = await run_job(ks, repos, spec, source, version=2)
    finally:
        if server is not None:
            server.close()
    [handle] = [s["handle"] for s in job["shards"]]
    assert handle != name
    assert handle in ks.kubelet.started
    assert await output_files(repos, pipeline, done["output_commit"]) == expected

    async def gone() -> bool:
        return name not in {p["metadata"]["name"] for p in await warm_pods(ks, pipeline)}

    await wait_until(gone, 15, "the failed warm pod to be deleted")
