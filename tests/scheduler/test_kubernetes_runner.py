"""The Kubernetes runner against a real kube-apiserver: the pods it makes, and how it reads
their phases, which the tests drive by patching pod status as a kubelet would."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from tests.backing.kube import KubeApiServer
from tests.scheduler.kube_fixtures import grant, new_namespace, running, terminated
from tusk.pipelines import Secret
from tusk_scheduler.runners.base import ShardHandle, ShardLaunch, ShardStatus
from tusk_scheduler.runners.k8s_errors import KubePermissionDenied
from tusk_scheduler.runners.kubernetes import KubernetesRunner, PodTemplate, label_value

TEMPLATE = PodTemplate(
    repo_url="http://repo.tusk:8081",
    node_selector={"pool": "batch"},
    tolerations=[{"key": "batch", "operator": "Exists", "effect": "NoSchedule"}],
    image_pull_secrets=["regcred"],
    run_as_user=1000,
)


def launch(job: str | None = None, shard: int = 0, attempt: int = 0) -> ShardLaunch:
    return ShardLaunch(
        job=job or uuid.uuid4().hex,
        pipeline="Edges_v2",
        shard=shard,
        attempt=attempt,
        output_repo="edges",
        meta_commit="c" * 32,
        token="job-credential",
        image="registry.example/edges:1",
        resource_requests={"cpu": "500m", "memory": "1Gi"},
        resource_limits={"memory": "2Gi", "gpu": 1},
        env={"MODE": "fast"},
        secrets=(
            Secret(name="db", key="password", env_var="DB_PASSWORD"),
            Secret(name="certs", mount_path="/etc/certs"),
        ),
        version=3,
    )


@pytest.fixture
def namespace(kube: KubeApiServer) -> str:
    return new_namespace(kube, "runner")


@pytest.fixture
async def runner(
    kube: KubeApiServer, namespace: str, tmp_path: Path
) -> AsyncIterator[KubernetesRunner]:
    config = kube.write_kubeconfig(tmp_path / "admin", namespace=namespace)
    made = KubernetesRunner(TEMPLATE, kubeconfig=config, cancel_grace=0, unschedulable_timeout=0.5)
    yield made
    await made.close()


def get_pod(kube: KubeApiServer, namespace: str, name: str) -> dict[str, Any]:
    pod: dict[str, Any] = kube.api("GET", f"/api/v1/namespaces/{namespace}/pods/{name}")
    return pod


async def wait_status(
    runner: KubernetesRunner, handle: ShardHandle, state: str, within: float = 10
) -> ShardStatus:
    deadline = time.monotonic() + within
    while (status := await runner.status(handle)).state != state:
        assert time.monotonic() < deadline, f"still {status}"
        await asyncio.sleep(0.02)
    return status


async def test_the_pod_is_made_as_the_spec_says(
    runner: KubernetesRunner, kube: KubeApiServer, namespace: str
) -> None:
    shard = launch()
    handle = await runner.start(shard)
    pod = get_pod(kube, namespace, handle.ref)
    meta, spec = pod["metadata"], pod["spec"]
    assert meta["labels"] == {
        "app.kubernetes.io/managed-by": "tusk-scheduler",
        "app.kubernetes.io/component": "worker",
        "tusk.io/job": shard.job,
        "tusk.io/pipeline": label_value("Edges_v2"),
        "tusk.io/shard": "0",
        "tusk.io/attempt": "0",
        "tusk.io/pipeline-version": "3",
    }
    assert meta["annotations"]["tusk.io/job"] == shard.job
    assert spec["restartPolicy"] == "Never"
    assert spec["serviceAccountName"] == "tusk-worker"
    assert spec["automountServiceAccountToken"] is False
    assert spec["nodeSelector"] == {"pool": "batch"}
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert {"key": "batch", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    assert any(t["key"] == "node.kubernetes.io/unreachable" for t in spec["tolerations"])
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = spec["containers"]
    assert container["image"] == "registry.example/edges:1"
    assert container["command"] == ["tusk-worker"]
    assert container["args"] == [
        "--output-repo", "edges", "--meta-commit", "c" * 32, "--job", shard.job, "--shard", "0"
    ]  # fmt: skip
    assert container["resources"] == {
        # (Kubernetes defaults an extended resource's request to its limit.)
        "requests": {"cpu": "500m", "memory": "1Gi", "nvidia.com/gpu": "1"},
        "limits": {"memory": "2Gi", "nvidia.com/gpu": "1"},
    }
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert env["MODE"] == "fast"
    assert env["TUSK_REPO_URL"] == "http://repo.tusk:8081"
    assert env["TUSK_TOKEN"] == "job-credential"  # the job's own, not the scheduler's
    assert env["TUSK_PFS_ROOT"] == "/pfs"
    assert env["DB_PASSWORD"] == {"secretKeyRef": {"name": "db", "key": "password"}}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert set(mounts) == {"/pfs", "/tmp", "/etc/certs"}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes[mounts["/pfs"]]
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert volumes[mounts["/etc/certs"]]["secret"]["secretName"] == "certs"
    # Starting the same attempt again (a scheduler that crashed after creating it) adopts it.
    assert await runner.start(shard) == handle


async def test_phases_are_followed_to_the_exit_code(
    runner: KubernetesRunner, kube: KubeApiServer, namespace: str
) -> None:
    ok, bad = await runner.start(launch()), await runner.start(launch())
    assert (await runner.status(ok)).running
    for handle in (ok, bad):
        kube.patch_pod_status(
            namespace, handle.ref, {"phase": "Running", "containerStatuses": [running()]}
        )
    kube.patch_pod_status(
        namespace, ok.ref, {"phase": "Succeeded", "containerStatuses": [terminated(0)]}
    )
    assert await wait_status(runner, ok, "exited") == ShardStatus("exited", 0)
    kube.patch_pod_status(
        namespace,
        bad.ref,
        {"phase": "Failed", "containerStatuses": [terminated(3, "Traceback: boom at datum 7")]},
    )
    assert await wait_status(runner, bad, "exited") == ShardStatus("exited", 3)
    assert "boom at datum 7" in await runner.output(bad, 2000)


async def test_an_image_that_cannot_be_pulled_fails_the_shard(
    runner: KubernetesRunner, kube: KubeApiServer, namespace: str
) -> None:
    handle = await runner.start(launch())
    waiting = {
        "name": "worker",
        "image": "registry.example/edges:1",
        "imageID": "",
        "ready": False,
        "restartCount": 0,
        "state": {
            "waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "x"'}
        },
    }
    kube.patch_pod_status(namespace, handle.ref, {"containerStatuses": [waiting]})
    status = await wait_status(runner, handle, "exited")
    assert status.exit_code is None
    assert "could not be pulled" in status.detail
    assert "ImagePullBackOff" in status.detail
    assert "ImagePullBackOff" in await runner.output(handle, 2000)


async def test_a_pod_no_node_takes_fails_after_the_timeout(
    runner: KubernetesRunner, kube: KubeApiServer, namespace: str
) -> None:
    handle = await runner.start(launch())
    unschedulable = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
    }
    kube.patch_pod_status(namespace, handle.ref, {"conditions": [unschedulable]})
    await wait_status(runner, handle, "running", within=2)  # seen, not yet for long
    status = await wait_status(runner, handle, "exited")
    assert "could not be scheduled" in status.detail
    assert "Insufficient" in status.detail


async def test_a_deleted_or_evicted_pod_is_lost(
    runner: KubernetesRunner, kube: KubeApiServer, namespace: str
) -> None:
    deleted, evicted = await runner.start(launch()), await runner.start(launch())
    kube.api("DELETE", f"/api/v1/namespaces/{namespace}/pods/{deleted.ref}")
    status = await wait_status(runner, deleted, "lost")
    assert "deleted" in status.detail
    kube.patch_pod_status(
        namespace,
        evicted.ref,
        {"phase": "Failed", "reason": "Evicted", "message": "The node was low on memory."},
    )
    status = await wait_status(runner, evicted, "lost")
    assert "low on memory" in status.detail
    # A new runner (after a restart) that never saw the pod: lost too.
    fresh = KubernetesRunner(TEMPLATE, namespace=namespace, kubeconfig=runner.kubeconfig)
    try:
        assert (await fresh.status(deleted)).state == "lost"
        assert await fresh.find_running(deleted.job) == []
    finally:
        await fresh.close()


async def test_the_watch_lists_again_when_its_version_expired(
    runner: KubernetesRunner, kube: KubeApiServer, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh etcd never compacts, so 410 Gone is injected: the next event raises it, as
    the client library does for an ERROR event with code 410."""
    handle = await runner.start(launch())
    await runner.status(handle)
    relists = runner.relists
    apply = runner.pod_watch.apply
    expired = []

    def gone_once(kind: str, pod: dict[str, Any]) -> None:
        if not expired:
            expired.append(kind)
            raise ApiException(status=410, reason="Gone: too old resource version")
        apply(kind, pod)

    monkeypatch.setattr(runner.pod_watch, "apply", gone_once)
    kube.patch_pod_status(namespace, handle.ref, {"phase": "Running"})
    kube.patch_pod_status(
        namespace, handle.ref, {"phase": "Succeeded", "containerStatuses": [terminated(0)]}
    )
    assert await wait_status(runner, handle, "exited") == ShardStatus("exited", 0)
    assert expired
    assert runner.relists == relists + 1


async def test_the_scheduler_needs_only_its_namespaced_role(
    kube: KubeApiServer, tmp_path: Path
) -> None:
    namespace = new_namespace(kube, "rbac")
    grant(kube, namespace, ["create", "get", "list", "watch", "delete", "patch"])
    config = kube.write_kubeconfig(tmp_path / "sched", token=kube.scheduler_token)
    runner = KubernetesRunner(TEMPLATE, namespace=namespace, kubeconfig=config, cancel_grace=0)
    try:
        handle = await runner.start(launch())
        assert (await runner.status(handle)).running
        assert await runner.find_running(handle.job) == [handle]
        await runner.output(handle, 100)  # pods/log allowed (no kubelet to answer: empty)
        await runner.cancel(handle)
        await runner.cleanup(handle.job)
        assert (await runner.status(handle)).state == "lost"
    finally:
        await runner.close()


async def test_a_missing_permission_is_named(kube: KubeApiServer, tmp_path: Path) -> None:
    namespace = new_namespace(kube, "rbac")
    grant(kube, namespace, ["create", "get", "list", "watch"])  # no delete
    config = kube.write_kubeconfig(tmp_path / "sched", token=kube.scheduler_token)
    runner = KubernetesRunner(TEMPLATE, namespace=namespace, kubeconfig=config)
    try:
        handle = await runner.start(launch())
        with pytest.raises(KubePermissionDenied) as raised:
            await runner.cancel(handle)
        message = str(raised.value)
        assert "lacks permission 'delete' on resource 'pods'" in message
        assert f"namespace {namespace!r}" in message
    finally:
        await runner.close()
    nothing = new_namespace(kube, "rbac")  # no Role at all: the watch names what it lacks
    runner = KubernetesRunner(TEMPLATE, namespace=nothing, kubeconfig=config)
    try:
        with pytest.raises(KubePermissionDenied, match="'list' on resource 'pods'"):
            await runner.status(ShardHandle("j", 0, 0, "tusk-x"))
    finally:
        await runner.close()
