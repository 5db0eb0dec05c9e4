"""Warm worker pods: a pipeline's shard pod made ahead of its next job.

Most of the time from a commit to its first datum's command on a fresh pod is the pod's
start-up and then the worker's (the interpreter, its imports, the first connection to the
repo service). A pipeline that keeps its workers (``autoscaling: false``, Pachyderm's
default) gets pods made ahead, once one of its shards has run to its end (so that a pipeline
whose pods cannot start, or are killed for their memory, gets none): the same pod as its
shards' (image, resources, env, secrets, volumes, node selector) without what is the job's,
running ``tusk-worker --listen``, which gets warm and waits for one assignment over HTTP on
the pod's IP.

Handing a shard over: the runner relabels the warm pod as the shard's pod (job, shard,
attempt: what finds it again after a restart and what cleans it up), guarded by the pod's
resource version so that two schedulers never take the same pod, then POSTs the assignment
with the key it put in the pod's environment when it made it. A pod that is not warm in time
or refuses is deleted, and the shard gets a new pod as without warm pods.

Warm pods are labelled with their pipeline and a hash of the pod they stand for: one whose
hash is not what the pipeline's shards now need (its spec changed, the scheduler's pod
settings changed) is deleted when a shard of the pipeline next ends, or when the scheduler's
look at the pipelines finds it changed, stopped, deleted or autoscaling.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any

import httpx
import structlog
from kubernetes_asyncio import client

from tusk_scheduler.runners.base import ShardLaunch
from tusk_scheduler.runners.k8s_errors import KubernetesError
from tusk_scheduler.runners.kubernetes.api import call_api
from tusk_scheduler.runners.kubernetes.manifest import (
    ATTEMPT_LABEL,
    CONTAINER,
    GROUP,
    JOB_ANNOTATION,
    JOB_LABEL,
    PIPELINE_ANNOTATION,
    SHARD_LABEL,
    VERSION_LABEL,
    PodTemplate,
    label_value,
    pod_manifest,
    pod_name,
)
from tusk_scheduler.runners.kubernetes.pod_state import container_status, terminal
from tusk_scheduler.runners.kubernetes.watch import PodWatch

log = structlog.get_logger()

WARM_FOR_LABEL = f"{GROUP}/warm-for"
WARM_HASH_LABEL = f"{GROUP}/warm-hash"
KEY_ENV = "TUSK_WORKER_ASSIGNMENT_KEY"
PORT_ENV = "TUSK_WORKER_LISTEN_PORT"
HOST_ENV = "TUSK_WORKER_LISTEN_HOST"
ASSIGNMENT_PATH = "/v1/assignment"
RETRY_CONNECT = 0.05  # seconds between tries to reach a warm pod that is not listening yet


def _job_free(launch: ShardLaunch) -> ShardLaunch:
    """The launch with what belongs to the job blanked out: what every job's shard pod of the
    pipeline has in common."""
    return replace(
        launch,
        job="",
        shard=0,
        attempt=0,
        meta_commit="",
        version=None,
        spec=None,
        fresh=False,
        token=None,
    )


def warm_manifest(launch: ShardLaunch, template: PodTemplate, port: int) -> dict[str, Any]:
    """The warm pod for ``launch``'s pipeline (a ``generateName``, a fresh key), labelled
    with the hash of what it stands for."""
    manifest = pod_manifest(_job_free(launch), template)
    meta = manifest["metadata"]
    for label in (JOB_LABEL, SHARD_LABEL, ATTEMPT_LABEL, VERSION_LABEL):
        meta["labels"].pop(label, None)
    meta["annotations"].pop(JOB_ANNOTATION, None)
    container = manifest["spec"]["containers"][0]
    container["args"] = ["--listen"]
    container["env"] += [
        {"name": PORT_ENV, "value": str(port)},
        {"name": HOST_ENV, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
    ]
    container["ports"] = [{"name": "handover", "containerPort": port, "protocol": "TCP"}]
    digest = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:16]
    del meta["name"]
    prefix = launch_prefix(launch)
    meta["generateName"] = f"{prefix}-warm-"
    meta["labels"] |= {WARM_FOR_LABEL: label_value(launch.pipeline), WARM_HASH_LABEL: digest}
    # The key to its assignment: readable by who may read pods (the scheduler), not by the
    # pipeline's command (the worker takes it out of the environment it passes on).
    container["env"].append({"name": KEY_ENV, "value": secrets.token_urlsafe(32)})
    return manifest


def launch_prefix(launch: ShardLaunch) -> str:
    """``tusk-<pipeline>``, as :func:`.manifest.pod_name` begins."""
    return pod_name(launch).rsplit("-", 3)[0]


def warm_hash(launch: ShardLaunch, template: PodTemplate, port: int) -> str:
    return str(warm_manifest(launch, template, port)["metadata"]["labels"][WARM_HASH_LABEL])


def _env_value(pod: Mapping[str, Any], name: str) -> str | None:
    for container in pod.get("spec", {}).get("containers") or ():
        if container.get("name") == CONTAINER:
            for env in container.get("env") or ():
                if env.get("name") == name and "value" in env:
                    return str(env["value"])
    return None


def warm_for(pod: Mapping[str, Any]) -> str | None:
    """The pipeline a warm pod is for (None: not a warm pod)."""
    meta = pod.get("metadata", {})
    if WARM_FOR_LABEL not in (meta.get("labels") or {}):
        return None
    pipeline = (meta.get("annotations") or {}).get(PIPELINE_ANNOTATION)
    return str(pipeline) if pipeline is not None else None


def _usable(pod: Mapping[str, Any]) -> bool:
    """Not ending, and with a container running on an address (perhaps not warm yet)."""
    status = pod.get("status", {})
    return (
        not terminal(pod)
        and not pod.get("metadata", {}).get("deletionTimestamp")
        and status.get("phase") == "Running"
        and bool(status.get("podIP"))
        and "running" in (container_status(pod).get("state") or {})
    )


class WarmPods:
    """The warm pods of one namespace: handed shards, made again, deleted when stale."""

    def __init__(
        self,
        core: client.CoreV1Api,
        namespace: str,
        watch: PodWatch,
        template: PodTemplate,
        *,
        per_pipeline: int,
        port: int,
        handover_timeout: float,
        delete: Callable[[str, float], Awaitable[None]],
    ) -> None:
        self.core = core
        self.namespace = namespace
        self.watch = watch
        self.template = template
        self.per_pipeline = per_pipeline
        self.port = port
        self.handover_timeout = handover_timeout
        self._delete = delete
        self._claimed: set[str] = set()  # taken by this process: never offered twice
        self._locks: dict[str, asyncio.Lock] = {}
        self._refills: dict[str, asyncio.Task[None]] = {}
        self._again: dict[str, ShardLaunch] = {}  # pipelines to look at (again), latest launch
        # Straight to the pod: no proxy from the environment stands between them.
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(handover_timeout), trust_env=False)

    async def close(self) -> None:
        for task in self._refills.values():
            task.cancel()
        for task in list(self._refills.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._refills.clear()
        await self._http.aclose()

    def _pods_for(self, pipeline: str) -> list[dict[str, Any]]:
        return [
            p
            for p in list(self.watch.pods.values())
            if warm_for(p) == pipeline and p["metadata"]["name"] not in self._claimed
        ]

    # --- handing a shard over ---------------------------------------------------------------

    async def take(self, launch: ShardLaunch, manifest: Mapping[str, Any]) -> str | None:
        """Hand the shard to a warm pod of its pipeline; that pod's name, or None (no warm pod
        matched, or none took it: the caller makes a pod)."""
        if self.per_pipeline <= 0 or not launch.keep_warm:
            return None
        wanted = warm_hash(launch, self.template, self.port)
        candidates = [
            p
            for p in self._pods_for(launch.pipeline)
            if p["metadata"]["labels"].get(WARM_HASH_LABEL) == wanted and _usable(p)
        ]
        for pod in candidates:
            name = str(pod["metadata"]["name"])
            self._claimed.add(name)
            try:
                claimed = await self._relabel(pod, launch, manifest)
            except KubernetesError as exc:
                # Taken or deleted meanwhile (409/404), or the apiserver said no: next one.
                log.info("warm pod not taken", pod=name, error=str(exc))
                continue
            if claimed is None:
                continue
            self.watch.pods[name] = claimed
            if await self._hand_over(claimed, launch):
                log.info(
                    "shard handed to a warm pod",
                    job=launch.job,
                    shard=launch.shard,
                    attempt=launch.attempt,
                    pod=name,
                )
                return name
            # It is labelled as the shard's pod now, and may hold half an assignment: gone.
            await self._delete(name, 0)
        return None

    async def _relabel(
        self, pod: Mapping[str, Any], launch: ShardLaunch, manifest: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """Make the warm pod the shard's pod, if nobody changed it since it was seen."""
        meta = pod["metadata"]
        labels: dict[str, str | None] = dict(manifest["metadata"]["labels"])
        labels |= {WARM_FOR_LABEL: None, WARM_HASH_LABEL: None}
        patch = {
            "metadata": {
                "resourceVersion": meta["resourceVersion"],
                "labels": labels,
                "annotations": dict(manifest["metadata"]["annotations"]),
            }
        }
        name = meta["name"]
        result: dict[str, Any] = await call_api(
            self.namespace,
            "patch",
            "pods",
            name,
            self.core.patch_namespaced_pod,
            name,
            self.namespace,
            patch,
            _content_type="application/merge-patch+json",
        )
        return result

    async def _hand_over(self, pod: Mapping[str, Any], launch: ShardLaunch) -> bool:
        """POST the assignment; retried while the pod's worker is not listening yet."""
        name = pod["metadata"]["name"]
        key = _env_value(pod, KEY_ENV)
        port = _env_value(pod, PORT_ENV) or str(self.port)
        ip = pod.get("status", {}).get("podIP")
        if not key or not ip:
            return False
        host = f"[{ip}]" if ":" in ip else ip
        body = {
            "argv": launch.worker_args(),
            "env": {"TUSK_TOKEN": launch.token} if launch.token else {},
            "shard_spec": launch.spec,
            "fresh": launch.fresh,
        }
        deadline = time.monotonic() + self.handover_timeout
        while True:
            try:
                response = await self._http.post(
                    f"http://{host}:{port}{ASSIGNMENT_PATH}",
                    json=body,
                    headers={"Authorization": f"Bearer {key}"},
                )
            except httpx.ConnectError:
                # Running, but its worker is still getting warm: worth a short wait (a new
                # pod takes longer), not a long one.
                if time.monotonic() >= deadline:
                    log.info("warm pod not listening in time", pod=name)
                    return False
                await asyncio.sleep(RETRY_CONNECT)
                continue
            except httpx.HTTPError as exc:
                log.warning("warm pod unreachable", pod=name, error=repr(exc))
                return False
            if response.status_code == 202:
                return True
            log.warning(
                "warm pod refused its shard",
                pod=name,
                status=response.status_code,
                answer=response.text[:500],
            )
            return False

    # --- keeping them -----------------------------------------------------------------------

    def refill(self, launch: ShardLaunch) -> None:
        """Make the pipeline's warm pods what they should be, in the background: stale ones
        deleted, missing ones made."""
        if self.per_pipeline <= 0 or not launch.keep_warm:
            return
        self._again[launch.pipeline] = launch
        running = self._refills.get(launch.pipeline)
        if running is not None and not running.done():
            return  # it looks again once done: a pod taken meanwhile is made again
        self._refills[launch.pipeline] = asyncio.create_task(
            self._refill(launch.pipeline), name=f"warm pods of {launch.pipeline}"
        )

    async def _refill(self, pipeline: str) -> None:
        while (launch := self._again.pop(pipeline, None)) is not None:
            try:
                await self.reconcile_pipeline(launch)
            except (KubernetesError, KeyError) as exc:
                log.warning("warm pods not made", pipeline=pipeline, error=str(exc))

    async def reconcile_pipeline(self, launch: ShardLaunch) -> None:
        lock = self._locks.setdefault(launch.pipeline, asyncio.Lock())
        async with lock:
            await self.watch.wait_synced()
            wanted = warm_hash(launch, self.template, self.port)
            keep = 0
            for pod in self._pods_for(launch.pipeline):
                name = pod["metadata"]["name"]
                if pod["metadata"].get("deletionTimestamp"):
                    continue
                stale = pod["metadata"]["labels"].get(WARM_HASH_LABEL) != wanted
                if stale or terminal(pod) or keep >= self.per_pipeline:
                    why = "stale" if stale else "ended" if terminal(pod) else "surplus"
                    log.info("deleting a warm pod", pod=name, pipeline=launch.pipeline, why=why)
                    await self._delete(name, 0)
                    continue
                keep += 1
            for _ in range(self.per_pipeline - keep):
                manifest = warm_manifest(launch, self.template, self.port)
                created: dict[str, Any] = await call_api(
                    self.namespace,
                    "create",
                    "pods",
                    manifest["metadata"]["generateName"],
                    self.core.create_namespaced_pod,
                    self.namespace,
                    manifest,
                )
                name = created["metadata"]["name"]
                self.watch.seen(name, created)
                log.info("warm pod created", pod=name, pipeline=launch.pipeline)

    async def prune(self, keep: Mapping[str, ShardLaunch]) -> None:
        """Delete the warm pods of pipelines not in ``keep`` (deleted, stopped, autoscaling)
        and those whose pod is no longer what the pipeline's launch in ``keep`` needs."""
        await self.watch.wait_synced()
        hashes = {
            name: warm_hash(launch, self.template, self.port) for name, launch in keep.items()
        }
        for pod in list(self.watch.pods.values()):
            pipeline = warm_for(pod)
            meta = pod["metadata"]
            if pipeline is None or meta.get("deletionTimestamp") or meta["name"] in self._claimed:
                continue
            if hashes.get(pipeline) != meta["labels"].get(WARM_HASH_LABEL):
                lock = self._locks.setdefault(pipeline, asyncio.Lock())
                async with lock:
                    log.info("deleting a warm pod", pod=meta["name"], pipeline=pipeline)
                    await self._delete(meta["name"], 0)
