"""A real kube-apiserver for the Kubernetes runner's tests, and a stand-in kubelet.

There is no kubelet, scheduler or controller-manager: ``FakeKubelet`` plays the first two for
one namespace. It binds each new worker pod to a fake node, runs the pod's command and args
as a local process with the pod's plain env values and its downward-API ones (``status.podIP``:
each pod gets an address of its own on the loopback network, 127.x.y.z, as a kubelet gives
each pod its own IP), patches the pod ``Running``, and when the
process ends patches ``Succeeded``/``Failed`` with the exit code and its output as the
termination message. A pod being deleted has its process killed and is then deleted for good
(what a kubelet confirms).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.backing.kube import (
    SCHEDULER_NAMESPACE,
    SCHEDULER_SERVICE_ACCOUNT,
    KubeApiError,
    KubeApiServer,
    ensure_installed,
)

NODE = "fake-node"


@pytest.fixture(scope="session")
def kube() -> Iterator[KubeApiServer]:
    ensure_installed()
    with KubeApiServer(authorization_mode="RBAC") as server:
        yield server


def new_namespace(kube: KubeApiServer, prefix: str = "t") -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    kube.create_namespace(name)
    return name


def grant(kube: KubeApiServer, namespace: str, pod_verbs: list[str], log: bool = True) -> None:
    """A namespaced Role for the scheduler's service account, bound to it."""
    rules: list[dict[str, Any]] = [{"apiGroups": [""], "resources": ["pods"], "verbs": pod_verbs}]
    if log:
        rules.append({"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]})
    bind_role(kube, namespace, rules)


def bind_role(kube: KubeApiServer, namespace: str, rules: list[dict[str, Any]]) -> None:
    """A Role of ``rules`` in ``namespace``, bound to the scheduler's service account."""
    base = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
    kube.api("POST", f"{base}/roles", {"metadata": {"name": "tusk-scheduler"}, "rules": rules})
    kube.api(
        "POST",
        f"{base}/rolebindings",
        {
            "metadata": {"name": "tusk-scheduler"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "tusk-scheduler",
            },
            "subjects": [
                {
                    "kind": "ServiceAccount",
                    "name": SCHEDULER_SERVICE_ACCOUNT,
                    "namespace": SCHEDULER_NAMESPACE,
                }
            ],
        },
    )


def terminated(code: int, message: str = "", reason: str | None = None) -> dict[str, Any]:
    return {
        "name": "worker",
        "image": "img",
        "imageID": "",
        "ready": False,
        "restartCount": 0,
        "state": {
            "terminated": {
                "exitCode": code,
                "reason": reason or ("Completed" if code == 0 else "Error"),
                "message": message,
            }
        },
    }


def running() -> dict[str, Any]:
    return {
        "name": "worker",
        "image": "img",
        "imageID": "",
        "ready": True,
        "restartCount": 0,
        "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
    }


def _loopback_address(taken: set[str]) -> str:
    """An address on the loopback network no pod has (random: test runs side by side)."""
    while True:
        ip = f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"
        if ip not in taken:
            return ip


class FakeKubelet:
    def __init__(
        self, kube: KubeApiServer, namespace: str, env: Mapping[str, str] | None = None
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.env = dict(env or {})
        self.processes: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
        self.started: set[str] = set()  # pods patched Running
        self.pod_ips: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None
        self._dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"kubelet-{uuid.uuid4().hex[:8]}"

    async def _api(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        return await asyncio.to_thread(self.kube.api, method, path, body, **kw)

    def _pod_path(self, name: str) -> str:
        return f"/api/v1/namespaces/{self.namespace}/pods/{name}"

    async def _patch(self, name: str, status: dict[str, Any]) -> None:
        with contextlib.suppress(KubeApiError):  # gone meanwhile
            await asyncio.to_thread(self.kube.patch_pod_status, self.namespace, name, status)

    async def _tick(self) -> None:
        listed = await self._api("GET", f"/api/v1/namespaces/{self.namespace}/pods")
        seen = set()
        for pod in listed["items"]:
            name = pod["metadata"]["name"]
            seen.add(name)
            phase = pod["status"].get("phase")
            if pod["metadata"].get("deletionTimestamp"):
                self._kill(name)
                with contextlib.suppress(KubeApiError):
                    await self._api("DELETE", self._pod_path(name), {"gracePeriodSeconds": 0})
                continue
            if name not in self.processes and phase == "Pending" and name not in self.started:
                await self._run(pod)
            elif name in self.processes and phase == "Running":
                process, out = self.processes[name]
                if process.poll() is not None:
                    code = process.returncode
                    text = out.read_text(errors="replace")[-4000:]
                    await self._patch(
                        name,
                        {
                            "phase": "Succeeded" if code == 0 else "Failed",
                            "containerStatuses": [terminated(code, text)],
                        },
                    )
                    del self.processes[name]
        for name in set(self.processes) - seen:
            self._kill(name)

    async def _run(self, pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        if not pod["spec"].get("nodeName"):
            await self._api(
                "POST",
                f"{self._pod_path(name)}/binding",
                {
                    "apiVersion": "v1",
                    "kind": "Binding",
                    "metadata": {"name": name},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": NODE},
                },
            )
        container = pod["spec"]["containers"][0]
        ip = self.pod_ips.setdefault(name, _loopback_address(set(self.pod_ips.values())))
        fields = {
            "status.podIP": ip,
            "metadata.name": name,
            "metadata.namespace": self.namespace,
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
        for e in container.get("env", []):
            if "value" in e:
                env[e["name"]] = e["value"]
            elif (path := e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")) in fields:
                env[e["name"]] = fields[path]
        # A pod is its own sandbox; here the "container" is a host process, and the test
        # pipelines count their runs in files on the host, which bubblewrap would hide.
        env.setdefault("TUSK_WORKER_SANDBOX", "off")
        env.update(self.env)
        self._dir.mkdir(parents=True, exist_ok=True)
        out = self._dir / f"{name}.log"
        pfs = self._dir / name / "pfs"
        pfs.mkdir(parents=True, exist_ok=True)
        env["TUSK_PFS_ROOT"] = str(pfs)  # the pod's emptyDir
        with out.open("wb") as output:
            process = subprocess.Popen(
                [*container["command"], *container.get("args", [])],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        self.processes[name] = (process, out)
        self.started.add(name)
        await self._patch(
            name,
            {
                "phase": "Running",
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "conditions": [{"type": "PodScheduled", "status": "True"}],
                "containerStatuses": [running()],
            },
        )

    def _kill(self, name: str) -> None:
        entry = self.processes.pop(name, None)
        if entry is not None and entry[0].poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(entry[0].pid, 9)
            entry[0].wait()

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(KubeApiError):
                await self._tick()
            await asyncio.sleep(0.05)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for name in list(self.processes):
            self._kill(name)


@contextlib.asynccontextmanager
async def fake_kubelet(
    kube: KubeApiServer, namespace: str, env: Mapping[str, str] | None = None
) -> AsyncIterator[FakeKubelet]:
    kubelet = FakeKubelet(kube, namespace, env)
    kubelet.start()
    try:
        yield kubelet
    finally:
        await kubelet.stop()
