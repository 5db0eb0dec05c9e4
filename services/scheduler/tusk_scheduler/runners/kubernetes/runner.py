"""``KubernetesRunner``: each shard is a pod running ``tusk-worker`` in the pipeline's image.

Pods are named ``tusk-<pipeline>-<job digest>-<shard>-<attempt>`` (so starting an attempt again
after a crash finds the pod it already created) and labelled with the job, pipeline, shard,
attempt and pipeline version; label values are made label-safe, and the exact job id is kept
in an annotation. A restarted scheduler finds its pods again by these labels.

One watch per runner follows every worker pod in the namespace (resuming from the last
resource version, listing again when the apiserver answers 410 Gone) into a cache that
``status()`` reads: polling a thousand shards costs no API calls. A pod missing from the cache
is looked up directly before being declared lost (the watch may lag behind a ``start()``).

Without a kubelet's word, how a pod ended is read from its status: the container's exit code
(``exited``); evicted, deleted, disrupted, or on a node that stopped answering (``lost``:
its unfinished datums run again); an image that cannot be pulled, a missing secret, or no node
to place it on for longer than ``unschedulable_timeout`` (``exited`` without an exit code and
with the reason, rather than a job that waits forever).

The scheduler's Role needs only: pods create, get, list, watch, delete; pods/log get.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config.config_exception import ConfigException
from kubernetes_asyncio.watch import Watch

from tusk.errors import TuskError
from tusk_scheduler.runners.base import ShardHandle, ShardLaunch, ShardStatus
from tusk_scheduler.runners.k8s_errors import RETRYABLE, KubernetesError, translate

log = structlog.get_logger()

GROUP = "tusk.io"
MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "tusk-scheduler"
JOB_LABEL = f"{GROUP}/job"
PIPELINE_LABEL = f"{GROUP}/pipeline"
SHARD_LABEL = f"{GROUP}/shard"
ATTEMPT_LABEL = f"{GROUP}/attempt"
VERSION_LABEL = f"{GROUP}/pipeline-version"
JOB_ANNOTATION = f"{GROUP}/job"
PIPELINE_ANNOTATION = f"{GROUP}/pipeline"
CONTAINER = "worker"
PFS_ROOT = "/pfs"
SECRETS_ROOT = "/var/run/tusk/secrets"
GPU_RESOURCE = "nvidia.com/gpu"
IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

# Waiting reasons that a kubelet keeps retrying but that will not fix themselves.
FATAL_WAITING = {
    "ErrImagePull": "the image could not be pulled",
    "ImagePullBackOff": "the image could not be pulled",
    "InvalidImageName": "the image name is invalid",
    "ErrImageNeverPull": "the image is not on the node and its pull policy is Never",
    "CreateContainerConfigError": "the container could not be configured (a missing secret "
    "or key?)",
    "CreateContainerError": "the container could not be created",
}
# DisruptionTarget reasons: the pod is going away through no fault of the worker.
_LOST_NODE_TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_DNS_UNSAFE = re.compile(r"[^a-z0-9-]+")
_WATCH_TIMEOUT = 240  # seconds the apiserver keeps one watch open; then we resume
_MAX_TOMBSTONES = 10_000


def label_value(value: str) -> str:
    """``value`` as a valid label value (≤ 63 characters of ``[A-Za-z0-9._-]``, alphanumeric
    at both ends); a value that had to change gets a digest of the original appended."""
    safe = _LABEL_UNSAFE.sub("-", value).strip("-_.")
    if safe == value and len(safe) <= 63:
        return safe
    digest = hashlib.sha256(value.encode()).hexdigest()[:10]
    return f"{safe[:52].strip('-_.')}-{digest}".strip("-")


def pod_name(launch: ShardLaunch) -> str:
    pipe = _DNS_UNSAFE.sub("-", launch.pipeline.lower()).strip("-")
    digest = hashlib.sha256(launch.job.encode()).hexdigest()[:12]
    return f"tusk-{pipe[:30].strip('-') or 'p'}-{digest}-{launch.shard}-{launch.attempt}"


@dataclass(frozen=True)
class PodTemplate:
    """How worker pods are shaped beyond what a launch says; from the scheduler's settings."""

    repo_url: str
    # A Secret whose key ``token`` workers get as TUSK_TOKEN when a launch brings no job
    # credential (the scheduler has no token of its own: the repo service checks none).
    token_secret: str | None = None
    default_image: str = "tusk-worker:latest"
    worker_command: tuple[str, ...] = ("tusk-worker",)
    service_account: str | None = "tusk-worker"
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: Sequence[Mapping[str, Any]] = ()
    image_pull_secrets: Sequence[str] = ()
    restricted: bool = True  # the restrictive security context
    run_as_user: int | None = None
    node_lost_after: int | None = 60  # tolerationSeconds for a NotReady/unreachable node
    image_pull_policy: str | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)


def pod_manifest(launch: ShardLaunch, template: PodTemplate) -> dict[str, Any]:
    """The pod that runs one shard's worker (a plain dict, as the API takes it)."""
    labels = {
        MANAGED_BY: MANAGER,
        "app.kubernetes.io/component": "worker",
        JOB_LABEL: label_value(launch.job),
        PIPELINE_LABEL: label_value(launch.pipeline),
        SHARD_LABEL: str(launch.shard),
        ATTEMPT_LABEL: str(launch.attempt),
    }
    if launch.version is not None:
        labels[VERSION_LABEL] = str(launch.version)
    env: list[dict[str, Any]] = [
        {"name": k, "value": v} for k, v in {**template.extra_env, **launch.env}.items()
    ]
    env += [
        {"name": "TUSK_REPO_URL", "value": template.repo_url},
        {"name": "TUSK_PFS_ROOT", "value": PFS_ROOT},
        {"name": "HOME", "value": "/tmp"},  # noqa: S108 (an emptyDir: the root fs is read-only)
    ]
    if launch.token:  # the job's own credential, revoked when it ends
        env.append({"name": "TUSK_TOKEN", "value": launch.token})
    elif template.token_secret:  # never the scheduler's own token
        env.append(
            {
                "name": "TUSK_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": template.token_secret, "key": "token"}},
            }
        )
    volumes: list[dict[str, Any]] = [
        {"name": "pfs", "emptyDir": {}},
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "pfs", "mountPath": PFS_ROOT},
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108
    ]
    for i, secret in enumerate(launch.secrets):
        if secret.env_var is not None:
            env.append(
                {
                    "name": secret.env_var,
                    "valueFrom": {"secretKeyRef": {"name": secret.name, "key": secret.key}},
                }
            )
        if secret.mount_path is not None:
            volumes.append({"name": f"secret-{i}", "secret": {"secretName": secret.name}})
            mounts.append({"name": f"secret-{i}", "mountPath": secret.mount_path, "readOnly": True})
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": launch.image or template.default_image,
        "command": list(template.worker_command),
        "args": [
            "--output-repo",
            launch.output_repo,
            "--meta-commit",
            launch.meta_commit,
            "--job",
            launch.job,
            "--shard",
            str(launch.shard),
        ],
        "env": env,
        "volumeMounts": mounts,
        # A failed worker's last output becomes its termination message, which the
        # scheduler can read even after the node (and its logs) are gone.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if template.image_pull_policy:
        container["imagePullPolicy"] = template.image_pull_policy
    resources = {
        key: value
        for key, value in (
            ("requests", _resources(launch.resource_requests)),
            ("limits", _resources(launch.resource_limits)),
        )
        if value
    }
    if resources:
        container["resources"] = resources
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,  # workers talk to the repo, not to Kubernetes
        "containers": [container],
        "volumes": volumes,
        "enableServiceLinks": False,
    }
    if template.service_account:
        spec["serviceAccountName"] = template.service_account
    if template.restricted:
        pod_security: dict[str, Any] = {
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        if template.run_as_user is not None:
            pod_security |= {
                "runAsUser": template.run_as_user,
                "runAsGroup": template.run_as_user,
                "fsGroup": template.run_as_user,
            }
        spec["securityContext"] = pod_security
        container["securityContext"] = {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }
    # The spec's scheduling_spec and image pull secrets add to the scheduler's own.
    node_selector = {**template.node_selector, **launch.node_selector}
    if node_selector:
        spec["nodeSelector"] = node_selector
    if launch.priority_class_name:
        spec["priorityClassName"] = launch.priority_class_name
    tolerations = [dict(t) for t in template.tolerations]
    if template.node_lost_after is not None:
        # Evicted sooner than the default 300 s from a node that stopped answering: the
        # shard is then lost and runs elsewhere.
        known = {t.get("key") for t in tolerations}
        tolerations += [
            {
                "key": key,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": template.node_lost_after,
            }
            for key in _LOST_NODE_TAINTS
            if key not in known
        ]
    if tolerations:
        spec["tolerations"] = tolerations
    pull_secrets = list(dict.fromkeys([*template.image_pull_secrets, *launch.image_pull_secrets]))
    if pull_secrets:
        spec["imagePullSecrets"] = [{"name": n} for n in pull_secrets]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(launch),
            "labels": labels,
            "annotations": {JOB_ANNOTATION: launch.job, PIPELINE_ANNOTATION: launch.pipeline},
        },
        "spec": spec,
    }


def _resources(values: Mapping[str, Any]) -> dict[str, str]:
    """Spec resources as Kubernetes names them: ``gpu`` under its device plugin's name
    (``gpu_type``, default nvidia.com/gpu), ``disk`` as ``ephemeral-storage``."""
    out: dict[str, str] = {}
    gpu_name = str(values.get("gpu_type") or GPU_RESOURCE)
    for key, value in values.items():
        if value is None or key == "gpu_type":
            continue
        name = {"gpu": gpu_name, "disk": "ephemeral-storage"}.get(key, key)
        out[name] = str(value)
    return out


# --- reading a pod's state ------------------------------------------------------------------


def _container(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    for status in pod.get("status", {}).get("containerStatuses") or ():
        if status.get("name") == CONTAINER:
            return dict(status)
    return {}


def _condition(pod: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for condition in pod.get("status", {}).get("conditions") or ():
        if condition.get("type") == kind:
            return dict(condition)
    return None


def _terminal(pod: Mapping[str, Any]) -> bool:
    return pod.get("status", {}).get("phase") in ("Succeeded", "Failed")


def _job_of(pod: Mapping[str, Any]) -> str | None:
    meta = pod.get("metadata", {})
    job = (meta.get("annotations") or {}).get(JOB_ANNOTATION)
    return str(job) if job is not None else None


def pod_status(
    pod: Mapping[str, Any],
    *,
    unschedulable_for: float = 0.0,
    unschedulable_timeout: float = 300.0,
) -> ShardStatus:
    """The shard's state as the pod shows it. ``unschedulable_for``: how long the runner has
    seen the pod unschedulable."""
    status = pod.get("status", {})
    phase = status.get("phase") or "Pending"
    name = pod.get("metadata", {}).get("name", "?")
    container = _container(pod)
    terminated = (container.get("state") or {}).get("terminated") or {}
    disruption = _condition(pod, "DisruptionTarget")
    if phase in ("Succeeded", "Failed"):
        if status.get("reason") == "Evicted" or (
            disruption is not None and disruption.get("status") == "True"
        ):
            why = status.get("message") or (disruption or {}).get("reason") or "evicted"
            return ShardStatus("lost", detail=f"pod {name} was evicted: {why}")
        code = terminated.get("exitCode")
        if code is None:
            if phase == "Succeeded":
                return ShardStatus("exited", 0)
            why = status.get("reason") or status.get("message") or "no exit code"
            return ShardStatus("lost", detail=f"pod {name} failed without an exit code ({why})")
        code = int(code)
        if terminated.get("reason") == "OOMKilled":
            return ShardStatus(
                "lost", code, f"the worker ran out of memory (pod {name} was OOMKilled)"
            )
        if code > 128:
            return ShardStatus("lost", code, f"the worker was killed (exit status {code})")
        return ShardStatus("exited", code)
    if phase == "Unknown":
        return ShardStatus("lost", detail=f"the node of pod {name} stopped answering")
    if pod.get("metadata", {}).get("deletionTimestamp"):
        why = f" ({disruption.get('reason')})" if disruption else ""
        return ShardStatus("lost", detail=f"pod {name} is being deleted{why}")
    waiting = (container.get("state") or {}).get("waiting") or {}
    reason = waiting.get("reason")
    if reason in FATAL_WAITING:
        message = waiting.get("message") or ""
        image = container.get("image") or ""
        return ShardStatus(
            "exited",
            None,
            f"{FATAL_WAITING[reason]} ({reason}{': ' + message if message else ''})"
            + (f"; image {image}" if image and image not in message else ""),
        )
    scheduled = _condition(pod, "PodScheduled")
    if (
        scheduled is not None
        and scheduled.get("status") == "False"
        and scheduled.get("reason") == "Unschedulable"
        and unschedulable_for >= unschedulable_timeout
    ):
        return ShardStatus(
            "exited",
            None,
            f"pod {name} could not be scheduled for {unschedulable_for:.0f}s: "
            f"{scheduled.get('message') or 'no node fits it'}",
        )
    return ShardStatus("running")


def _unschedulable(pod: Mapping[str, Any]) -> bool:
    scheduled = _condition(pod, "PodScheduled")
    return (
        scheduled is not None
        and scheduled.get("status") == "False"
        and scheduled.get("reason") == "Unschedulable"
    )


def _handle(pod: Mapping[str, Any]) -> ShardHandle | None:
    meta = pod.get("metadata", {})
    labels = meta.get("labels") or {}
    job = _job_of(pod)
    try:
        shard, attempt = int(labels[SHARD_LABEL]), int(labels[ATTEMPT_LABEL])
    except (KeyError, ValueError):
        return None
    if job is None:
        return None
    return ShardHandle(job=job, shard=shard, attempt=attempt, ref=str(meta["name"]))


# --- the runner -----------------------------------------------------------------------------


async def load_api_client(kubeconfig: Path | None = None) -> tuple[client.ApiClient, str | None]:
    """An API client from ``kubeconfig``, else the pod's service account, else the default
    kubeconfig; and the namespace that configuration names, if any."""
    configuration = client.Configuration()
    namespace: str | None = None
    if kubeconfig is None:
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except ConfigException:
            pass
        else:
            with contextlib.suppress(OSError):
                namespace = (await asyncio.to_thread(IN_CLUSTER_NAMESPACE.read_text)).strip()
            return client.ApiClient(configuration=configuration), namespace or None
    try:
        await config.load_kube_config(
            config_file=str(kubeconfig) if kubeconfig else None,
            client_configuration=configuration,
            persist_config=False,
        )
        _, active = config.list_kube_config_contexts(
            config_file=str(kubeconfig) if kubeconfig else None
        )
    except (ConfigException, OSError) as exc:
        where = kubeconfig or "~/.kube/config"
        raise KubernetesError(
            f"no Kubernetes configuration: not in a pod with a service account, and {where} "
            f"could not be loaded ({exc}); set TUSK_KUBECONFIG"
        ) from exc
    namespace = ((active or {}).get("context") or {}).get("namespace")
    return client.ApiClient(configuration=configuration), namespace


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
        # The watch's view: pod name -> pod (a dict as the API sends it).
        self._pods: dict[str, dict[str, Any]] = {}
        # Pods deleted while watched: their last state (bounded).
        self._gone: dict[str, dict[str, Any]] = {}
        self._cancelled: set[str] = set()
        self._unschedulable_since: dict[str, float] = {}
        self._watcher: asyncio.Task[None] | None = None
        self._synced = asyncio.Event()
        self._watch_error: BaseException | None = None
        self.resource_version: str | None = None
        self.relists = 0  # how often the watch had to list again (410 Gone, errors)

    @property
    def namespace(self) -> str:
        assert self._namespace is not None, "connect() first"
        return self._namespace

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
                self._watcher = asyncio.create_task(self._watch(), name="tusk-kube-watch")
        return self._core

    async def _call(
        self, verb: str, resource: str, name: str | None, call: Any, *args: Any, **kwargs: Any
    ) -> Any:
        """One API call, its errors translated; the answer as a dict (no model objects)."""
        try:
            response = await call(*args, _preload_content=False, **kwargs)
            async with response:
                # Unread answers are not checked by the client: errors are ours to raise.
                if not 200 <= response.status < 300:
                    error = ApiException(status=response.status, reason=response.reason)
                    error.body = await response.text()
                    raise error
                if resource == "pods/log":
                    return (await response.read()).decode(errors="replace")
                return await response.json()
        except (ApiException, *RETRYABLE) as exc:
            raise translate(
                exc, verb=verb, resource=resource, namespace=self.namespace, name=name
            ) from exc

    # --- the watch --------------------------------------------------------------------------

    async def _watch(self) -> None:
        """List, then watch from the list's resource version; list again on 410 Gone."""
        core = self._core
        assert core is not None
        selector = f"{MANAGED_BY}={MANAGER}"
        backoff = 0.2
        while True:
            try:
                if self.resource_version is None:
                    await self._relist(core, selector)
                stream = Watch().stream(
                    core.list_namespaced_pod,
                    self.namespace,
                    label_selector=selector,
                    resource_version=self.resource_version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=_WATCH_TIMEOUT,
                )
                async with stream:
                    async for event in stream:
                        self._apply(event["type"], event["raw_object"])
                        backoff = 0.2
            except asyncio.CancelledError:
                raise
            except (ApiException, TuskError) as exc:
                if isinstance(exc, ApiException) and exc.status == 410:
                    # Our resource version is too old: start over from a list.
                    log.info("pod watch expired; listing again", namespace=self.namespace)
                    self.resource_version = None
                    continue
                self._watch_error = (
                    exc
                    if isinstance(exc, TuskError)
                    else translate(exc, verb="watch", resource="pods", namespace=self.namespace)
                )
                log.warning("pod watch failed", error=str(self._watch_error))
                self._synced.set()  # wake waiters: they raise the error
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
            except Exception as exc:  # a watch that stopped would hang every job
                log.warning("pod watch interrupted; resuming", error=repr(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def _relist(self, core: client.CoreV1Api, selector: str) -> None:
        listed = await self._call(
            "list",
            "pods",
            None,
            core.list_namespaced_pod,
            self.namespace,
            label_selector=selector,
        )
        self.relists += 1
        fresh = {p["metadata"]["name"]: p for p in listed.get("items") or ()}
        for name, pod in self._pods.items():
            if name not in fresh:
                self._bury(name, pod)
        self._pods = fresh
        self.resource_version = listed["metadata"]["resourceVersion"]
        self._watch_error = None
        self._synced.set()

    def _apply(self, kind: str, pod: dict[str, Any]) -> None:
        version = pod.get("metadata", {}).get("resourceVersion")
        if version:
            self.resource_version = version
        if kind == "BOOKMARK":
            return
        if kind == "ERROR":  # the library raises 410s; anything else: list again
            self.resource_version = None
            raise ApiException(status=pod.get("code"), reason=pod.get("message"))
        name = pod["metadata"]["name"]
        if kind == "DELETED":
            self._pods.pop(name, None)
            self._bury(name, pod)
        else:
            self._pods[name] = pod

    def _bury(self, name: str, pod: dict[str, Any]) -> None:
        self._gone[name] = pod
        self._unschedulable_since.pop(name, None)
        while len(self._gone) > _MAX_TOMBSTONES:
            self._gone.pop(next(iter(self._gone)))

    async def _pod(self, name: str) -> dict[str, Any] | None:
        """The pod as last seen: from the watch, else asked for (None: it does not exist)."""
        core = await self.connect()
        if name in self._pods:
            return self._pods[name]
        if name in self._gone:
            return None
        try:
            pod: dict[str, Any] = await self._call(
                "get", "pods", name, core.read_namespaced_pod, name, self.namespace
            )
        except KubernetesError as exc:
            if exc.details.get("status") == 404:
                return None
            raise
        self._pods.setdefault(name, pod)
        return pod

    # --- Runner -----------------------------------------------------------------------------

    async def start(self, launch: ShardLaunch) -> ShardHandle:
        core = await self.connect()
        manifest = pod_manifest(launch, self.template)
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
            if _terminal(pod) or pod["metadata"].get("deletionTimestamp"):
                await self._delete(name, grace=0)
                await self._wait_deleted(name)
                pod = await self._call(
                    "create", "pods", name, core.create_namespaced_pod, self.namespace, manifest
                )
        self._pods[name] = pod
        self._gone.pop(name, None)
        self._cancelled.discard(name)
        log.info(
            "worker pod created",
            job=launch.job,
            shard=launch.shard,
            attempt=launch.attempt,
            pod=name,
            namespace=self.namespace,
        )
        return ShardHandle(job=launch.job, shard=launch.shard, attempt=launch.attempt, ref=name)

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
            last = self._gone.get(name)
            if last is not None and _terminal(last):
                return pod_status(last)
            if name in self._cancelled:
                return ShardStatus("lost", detail=f"pod {name} was deleted (cancelled)")
            return ShardStatus("lost", detail=f"pod {name} was deleted")
        if name in self._cancelled and not _terminal(pod):
            return ShardStatus("lost", detail=f"pod {name} was deleted (cancelled)")
        waited = 0.0
        if _unschedulable(pod):
            since = self._unschedulable_since.setdefault(name, time.monotonic())
            waited = time.monotonic() - since
        else:
            self._unschedulable_since.pop(name, None)
        return pod_status(
            pod, unschedulable_for=waited, unschedulable_timeout=self.unschedulable_timeout
        )

    async def _wait_synced(self) -> None:
        await self.connect()
        await self._synced.wait()
        if self._watch_error is not None:
            raise self._watch_error

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
        await self._delete(handle.ref, 0 if _terminal(pod) else self.cancel_grace)

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
        return [p for p in listed.get("items") or () if _job_of(p) == job]

    async def find_running(self, job: str) -> list[ShardHandle]:
        running: dict[int, ShardHandle] = {}
        orphans: list[ShardHandle] = []
        for pod in await self._job_pods(job):
            handle = _handle(pod)
            if handle is None or handle.ref in self._cancelled:
                continue
            if not pod_status(pod).running:
                continue
            self._pods.setdefault(handle.ref, pod)
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
        pod = self._pods.get(name) or self._gone.get(name)
        if pod is None:
            with contextlib.suppress(KubernetesError):
                pod = await self._pod(name)
        parts: list[str] = []
        message = ""
        if pod is not None:
            state = _container(pod).get("state") or {}
            terminated = state.get("terminated") or {}
            message = str(terminated.get("message") or "")
            status = pod.get("status", {})
            if status.get("reason") or status.get("message"):
                parts.append(f"[pod {status.get('reason', '')}: {status.get('message', '')}]")
            waiting = state.get("waiting") or {}
            if waiting.get("reason"):
                parts.append(f"[{waiting['reason']}: {waiting.get('message', '')}]")
        logs = ""
        if pod is not None and name not in self._gone:
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

    async def cleanup(self, job: str) -> None:
        for pod in await self._job_pods(job):
            name = pod["metadata"]["name"]
            self._cancelled.add(name)
            await self._delete(name, 0 if _terminal(pod) else self.cancel_grace)
        for name in [n for n, p in self._gone.items() if _job_of(p) == job]:
            del self._gone[name]

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        if self._api_client is not None and self._owns_client:
            await self._api_client.close()
            self._api_client = None
        self._core = None
