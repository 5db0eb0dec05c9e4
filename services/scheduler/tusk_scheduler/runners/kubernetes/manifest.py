"""Worker pods as manifests: their names, labels and annotations, and the pod that runs one
shard's worker (a plain dict, as the API takes it).

Pods are named ``tusk-<pipeline>-<job digest>-<shard>-<attempt>`` (so starting an attempt again
after a crash finds the pod it already created) and labelled with the job, pipeline, shard,
attempt and pipeline version; label values are made label-safe, and the exact job id is kept
in an annotation. A restarted scheduler finds its pods again by these labels.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tusk.paths import flat_name
from tusk_scheduler.runners.base import ShardLaunch

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

# DisruptionTarget reasons: the pod is going away through no fault of the worker.
_LOST_NODE_TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_DNS_UNSAFE = re.compile(r"[^a-z0-9-]+")


def label_value(value: str) -> str:
    """``value`` as a valid label value (≤ 63 characters of ``[A-Za-z0-9._-]``, alphanumeric
    at both ends); a value that had to change gets a digest of the original appended. A
    qualified name ``p/x`` is ``p.x``: names hold no '.', so it stands for that name alone."""
    flat = flat_name(value)
    safe = _LABEL_UNSAFE.sub("-", flat).strip("-_.")
    if safe == flat and len(safe) <= 63:
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
        "args": launch.worker_args(),
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

