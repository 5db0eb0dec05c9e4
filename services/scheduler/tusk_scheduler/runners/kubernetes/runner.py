"""``KubernetesRunner``: each shard is a pod running ``tusk-worker`` in the pipeline's image.

The pod's shape is :mod:`.manifest`'s; how a pod's shard stands, :mod:`.pod_state`'s; the
API client, :mod:`.config`'s; the cache that ``status()`` reads, :mod:`.watch`'s. A pod
missing from the cache is looked up directly before being declared lost (the watch may lag
behind a ``start()``).

A shard of a pipeline that keeps its workers is handed to a warm pod made ahead when one is
ready (:mod:`.warm`); otherwise, and after any failed hand-over, it gets a pod of its own.
Once one of the pipeline's shards has run to its end, a warm pod is made for the next.

The scheduler's Role needs only: pods create, get, list, watch, delete, patch (a warm pod is
relabelled as its shard's); pods/log get; secrets get (an SQL egress's password). It must
reach worker pods on the warm pods' port.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog
from kubernetes_asyncio import client

from tusk_scheduler.runners.base import SecretNotFound, ShardHandle, ShardLaunch, ShardStatus
from tusk_scheduler.runners.k8s_errors import KubernetesError
from tusk_scheduler.runners.kubernetes.api import call_api
from tusk_scheduler.runners.kubernetes.config import load_api_client
from tusk_scheduler.runners.kubernetes.manifest import (
    CONTAINER,
    JOB_LABEL,
    MANAGED_BY,
    MANAGER,
    PodTemplate,
    label_value,
    pod_manifest,
)
from tusk_scheduler.runners.kubernetes.pod_state import (
    container_status,
    handle_of,
    job_of,
    pod_status,
    terminal,
    unschedulable,
)
from tusk_scheduler.runners.kubernetes.warm import WarmPods
from tusk_scheduler.runners.kubernetes.watch import PodWatch

log = structlog.get_logger()


class KubernetesRunner:
    kind = "kubernetes"
    takes_spec = False  # a pod reads it from the meta commit
    max_shards: int | None = None  # pods are bounded by the cluster scheduler and quotas

    def __init__(
        self,
        template: PodTemplate,
        *,
        namespace: str | None = None,
        kubeconfig: Path | None = None,
        api_client: client.ApiClient | None = None,
        cancel_grace: float = 10.0,
        unschedulable_timeout: float = 300.0,
        warm_pods: int = 0,
        warm_port: int = 8090,
        handover_timeout: float = 2.0,
    ) -> None:
        self.template = template
        self._namespace = namespace
        self.kubeconfig = kubeconfig
        self.cancel_grace = cancel_grace
        self.unschedulable_timeout = unschedulable_timeout
        self._api_client = api_client
        self._owns_client = api_client is None
        self._core: client.CoreV1Api | None = None
        self._connect_lock = asyncio.Lock()
        self._cancelled: set[str] = set()
        self._unschedulable_since: dict[str, float] = {}
        self._watch: PodWatch | None = None
        self.warm_pods = warm_pods
        self.warm_port = warm_port
        self.handover_timeout = handover_timeout
        self._warm: WarmPods | None = None
        # Pods of pipelines that keep a warm pod, until their worker is seen to end.
        self._warm_after: dict[str, ShardLaunch] = {}

    @property
    def namespace(self) -> str:
        assert self._namespace is not None, "connect() first"
        return self._namespace

    @property
    def api_client(self) -> client.ApiClient:
        """The client ``connect()`` made (or was given), for the other kinds it manages."""
        assert self._api_client is not None, "connect() first"
        return self._api_client

    @property
    def pod_watch(self) -> PodWatch:
        assert self._watch is not None, "connect() first"
        return self._watch

    @property
    def warm(self) -> WarmPods:
        assert self._warm is not None, "connect() first"
        return self._warm

    @property
    def relists(self) -> int:
        """How often the watch had to list again (410 Gone, errors)."""
        return self._watch.relists if self._watch is not None else 0

    async def connect(self) -> client.CoreV1Api:
        if self._core is not None:
            return self._core
        async with self._connect_lock:
            if self._core is None:
                if self._api_client is None:
                    self._api_client, configured = await load_api_client(self.kubeconfig)
                    self._namespace = self._namespace or configured
                self._namespace = self._namespace or "default"
                self._core = client.CoreV1Api(self._api_client)
                self._watch = PodWatch(
                    self._core,
                    self._namespace,
                    on_gone=lambda name: self._unschedulable_since.pop(name, None),
                )
                self._watch.start()
                self._warm = WarmPods(
                    self._core,
                    self._namespace,
                    self._watch,
                    self.template,
                    per_pipeline=self.warm_pods,
                    port=self.warm_port,
                    handover_timeout=self.handover_timeout,
                    delete=self._delete,
                )
        return self._core

    async def _call(
        self, verb: str, resource: str, name: str | None, call: Any, *args: Any, **kwargs: Any
    ) -> Any:
        return await call_api(self.namespace, verb, resource, name, call, *args, **kwargs)

    # --- pods -------------------------------------------------------------------------------

    async def _pod(self, name: str) -> dict[str, Any] | None:
        """The pod as last seen: from the watch, else asked for (None: it does not exist)."""
        core = await self.connect()
        watch = self.pod_watch
        if name in watch.pods:
            return watch.pods[name]
        if name in watch.gone:
            return None
        try:
            pod: dict[str, Any] = await self._call(
                "get", "pods", name, core.read_namespaced_pod, name, self.namespace
            )
        except KubernetesError as exc:
            if exc.details.get("status") == 404:
                return None
            raise
        watch.seen(name, pod)
        return pod

    # --- Runner -----------------------------------------------------------------------------

    async def start(self, launch: ShardLaunch) -> ShardHandle:
        core = await self.connect()
        manifest = pod_manifest(launch, self.template)
        warm = await self.warm.take(launch, manifest)
        if warm is not None:
            self._remember(warm, launch)
            self._cancelled.discard(warm)
            return ShardHandle(job=launch.job, shard=launch.shard, attempt=launch.attempt, ref=warm)
        name = manifest["metadata"]["name"]
        try:
            pod = await self._call(
                "create", "pods", name, core.create_namespaced_pod, self.namespace, manifest
            )
        except KubernetesError as exc:
            if exc.details.get("status") != 409:
                raise
            # Created before a crash: keep it if it still runs, else make it anew.
            pod = await self._call(
                "get", "pods", name, core.read_namespaced_pod, name, self.namespace
            )
            if terminal(pod) or pod["metadata"].get("deletionTimestamp"):
                await self._delete(name, grace=0)
                await self._wait_deleted(name)
                pod = await self._call(
                    "create", "pods", name, core.create_namespaced_pod, self.namespace, manifest
                )
        self.pod_watch.pods[name] = pod
        self.pod_watch.gone.pop(name, None)
        self._cancelled.discard(name)
        self._remember(name, launch)
        log.info(
            "worker pod created",
            job=launch.job,
            shard=launch.shard,
            attempt=launch.attempt,
            pod=name,
            namespace=self.namespace,
        )
        return ShardHandle(job=launch.job, shard=launch.shard, attempt=launch.attempt, ref=name)

    def _remember(self, pod: str, launch: ShardLaunch) -> None:
        if launch.keep_warm and self.warm_pods > 0:
            self._warm_after[pod] = launch

    def _ended(self, pod: str, status: ShardStatus) -> ShardStatus:
        """``status``, once it has been seen; a warm pod is made for the pipeline once one of
        its shards' workers ran to an exit status (not before: a pipeline whose pods cannot
        start, or are killed for their memory, would get a warm pod that fails the same way)."""
        if status.state == "exited" and status.exit_code is not None:
            launch = self._warm_after.pop(pod, None)
            if launch is not None:
                self.warm.refill(launch)
        elif not status.running:
            self._warm_after.pop(pod, None)
        return status

    async def _wait_deleted(self, name: str, within: float = 30.0) -> None:
        core = await self.connect()
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                await self._call(
                    "get", "pods", name, core.read_namespaced_pod, name, self.namespace
                )
            except KubernetesError as exc:
                if exc.details.get("status") == 404:
                    return
                raise
            await asyncio.sleep(0.1)
        raise KubernetesError(f"pod {name} in {self.namespace!r} was not deleted in {within}s")

    async def status(self, handle: ShardHandle) -> ShardStatus:
        name = handle.ref
        await self._wait_synced()
        pod = await self._pod(name)
        if pod is None:
            last = self.pod_watch.gone.get(name)
            if last is not None and terminal(last):
                return self._ended(name, pod_status(last))
            if name in self._cancelled:
                return ShardStatus("lost", detail=f"pod {name} was deleted (cancelled)")
            return ShardStatus("lost", detail=f"pod {name} was deleted")
        if name in self._cancelled and not terminal(pod):
            return ShardStatus("lost", detail=f"pod {name} was deleted (cancelled)")
        waited = 0.0
        if unschedulable(pod):
            since = self._unschedulable_since.setdefault(name, time.monotonic())
            waited = time.monotonic() - since
        else:
            self._unschedulable_since.pop(name, None)
        return self._ended(
            name,
            pod_status(
                pod, unschedulable_for=waited, unschedulable_timeout=self.unschedulable_timeout
            ),
        )

    async def _wait_synced(self) -> None:
        await self.connect()
        await self.pod_watch.wait_synced()

    async def _delete(self, name: str, grace: float) -> None:
        core = await self.connect()
        try:
            await self._call(
                "delete",
                "pods",
                name,
                core.delete_namespaced_pod,
                name,
                self.namespace,
                grace_period_seconds=int(grace),
            )
        except KubernetesError as exc:
            if exc.details.get("status") != 404:
                raise

    async def cancel(self, handle: ShardHandle) -> None:
        pod = await self._pod(handle.ref)
        if pod is None:
            return
        self._cancelled.add(handle.ref)
        await self._delete(handle.ref, 0 if terminal(pod) else self.cancel_grace)

    async def _job_pods(self, job: str) -> list[dict[str, Any]]:
        core = await self.connect()
        listed = await self._call(
            "list",
            "pods",
            None,
            core.list_namespaced_pod,
            self.namespace,
            label_selector=f"{MANAGED_BY}={MANAGER},{JOB_LABEL}={label_value(job)}",
        )
        return [p for p in listed.get("items") or () if job_of(p) == job]

    async def find_running(self, job: str) -> list[ShardHandle]:
        running: dict[int, ShardHandle] = {}
        orphans: list[ShardHandle] = []
        for pod in await self._job_pods(job):
            handle = handle_of(pod)
            if handle is None or handle.ref in self._cancelled:
                continue
            if not pod_status(pod).running:
                continue
            self.pod_watch.seen(handle.ref, pod)
            other = running.get(handle.shard)
            if other is not None:
                # Two attempts of one shard: the later one is the scheduler's.
                older, handle = sorted((other, handle), key=lambda h: h.attempt)
                orphans.append(older)
            running[handle.shard] = handle
        for orphan in orphans:
            log.info("deleting an orphaned worker pod", job=job, pod=orphan.ref)
            await self.cancel(orphan)
        return sorted(running.values(), key=lambda h: (h.shard, h.attempt))

    async def output(self, handle: ShardHandle, max_bytes: int) -> str:
        core = await self.connect()
        name = handle.ref
        watch = self.pod_watch
        pod = watch.pods.get(name) or watch.gone.get(name)
        if pod is None:
            with contextlib.suppress(KubernetesError):
                pod = await self._pod(name)
        parts: list[str] = []
        message = ""
        if pod is not None:
            state = container_status(pod).get("state") or {}
            terminated = state.get("terminated") or {}
            message = str(terminated.get("message") or "")
            status = pod.get("status", {})
            if status.get("reason") or status.get("message"):
                parts.append(f"[pod {status.get('reason', '')}: {status.get('message', '')}]")
            waiting = state.get("waiting") or {}
            if waiting.get("reason"):
                parts.append(f"[{waiting['reason']}: {waiting.get('message', '')}]")
        logs = ""
        if pod is not None and name not in watch.gone:
            try:
                logs = await self._call(
                    "get",
                    "pods/log",
                    name,
                    core.read_namespaced_pod_log,
                    name,
                    self.namespace,
                    container=CONTAINER,
                    tail_lines=1000,
                )
            except KubernetesError as exc:
                # No kubelet to ask (node gone, container never started): the termination
                # message is all there is.
                log.debug("no pod log", pod=name, error=str(exc))
        if message and message.strip() not in logs:
            parts.append(message)
        if logs:
            parts.append(logs)
        text = "\n".join(p.rstrip("\n") for p in parts if p)
        encoded = text.encode()
        return encoded[-max_bytes:].decode(errors="replace") if max_bytes else ""

    async def read_secret(self, name: str, key: str) -> str:
        core = await self.connect()
        try:
            secret: dict[str, Any] = await self._call(
                "get", "secrets", name, core.read_namespaced_secret, name, self.namespace
            )
        except KubernetesError as exc:
            if exc.details.get("status") == 404:
                raise SecretNotFound(
                    f"no Secret {name!r} in namespace {self.namespace!r}"
                ) from None
            raise
        value = (secret.get("data") or {}).get(key)
        if value is None:
            raise SecretNotFound(
                f"Secret {name!r} in namespace {self.namespace!r} has no key {key!r}"
            )
        return base64.b64decode(value).decode()

    async def cleanup(self, job: str) -> None:
        for pod in await self._job_pods(job):
            name = pod["metadata"]["name"]
            self._cancelled.add(name)
            await self._delete(name, 0 if terminal(pod) else self.cancel_grace)
        if self._watch is not None:
            gone = self._watch.gone
            for name in [n for n, p in gone.items() if job_of(p) == job]:
                del gone[name]

    async def prune_warm(self, keep: Mapping[str, ShardLaunch]) -> None:
        """Delete the warm pods of pipelines not in ``keep`` and stale ones of those in it."""
        await self.connect()
        await self.warm.prune(keep)

    async def close(self) -> None:
        if self._warm is not None:
            await self._warm.close()
            self._warm = None
        if self._watch is not None:
            await self._watch.close()
            self._watch = None
        if self._api_client is not None and self._owns_client:
            await self._api_client.close()
            self._api_client = None
        self._core = None
