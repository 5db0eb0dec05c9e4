"""Spouts and service pipelines as manifests: one Deployment each (one replica running the
pipeline's command), and for a service a Service in front of it.

The pod is shaped as a worker pod is (:func:`.manifest.pod_manifest`: image, resources,
secrets, security context, node selector, tolerations, pull secrets) but runs the pipeline's
own command, and Kubernetes restarts it when it dies (``restartPolicy: Always``, with the
kubelet's growing back-off). A spout's Deployment is ``Recreate``: one process at a time
commits into its output branch. A service pod stages its inputs in an init container
(``tusk-worker stage``, the worker's own staging) into ``/pfs/<input>``; the commits it serves
are in the pod template's annotation, so a moved input rolls the Deployment.

Each object is labelled (managed-by, component, pipeline) so that a restarted scheduler finds
and adopts what exists; ``tusk.io/spec-hash`` says what it was made from (everything but the
credential), so an unchanged pipeline is left alone, and ``tusk.io/credential`` names the
credential to revoke when it is replaced or deleted.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from tusk_scheduler.runners.base import ShardLaunch, SpoutLaunch
from tusk_scheduler.runners.kubernetes.manifest import (
    GROUP,
    MANAGED_BY,
    MANAGER,
    PFS_ROOT,
    PIPELINE_ANNOTATION,
    PIPELINE_LABEL,
    VERSION_LABEL,
    PodTemplate,
    label_value,
    pod_manifest,
)

COMPONENT = "app.kubernetes.io/component"
SPOUT, SERVICE = "spout", "service"
SPEC_HASH_ANNOTATION = f"{GROUP}/spec-hash"
CREDENTIAL_ANNOTATION = f"{GROUP}/credential"
CREDENTIAL_EXPIRES_ANNOTATION = f"{GROUP}/credential-expires"
INPUTS_ANNOTATION = f"{GROUP}/inputs"
SELECTOR = f"{MANAGED_BY}={MANAGER},{COMPONENT} in ({SPOUT},{SERVICE})"
"""The label selector of every spout's and service's object."""

# What the init container that stages a service's inputs needs (not the pipeline's own env).
_STAGE_ENV = ("TUSK_REPO_URL", "TUSK_TOKEN", "TUSK_PFS_ROOT", "HOME")
_DNS_UNSAFE = re.compile(r"[^a-z0-9-]+")


def workload_name(kind: str, pipeline: str) -> str:
    """``tusk-<kind>-<pipeline>`` as a DNS label (a Service's name is one: ≤ 63 characters);
    a pipeline name that had to change gets a digest of the original appended."""
    safe = _DNS_UNSAFE.sub("-", pipeline.lower()).strip("-")
    if safe == pipeline and len(safe) <= 63 - len(f"tusk-{kind}-"):
        return f"tusk-{kind}-{safe}"
    digest = hashlib.sha256(pipeline.encode()).hexdigest()[:8]
    return f"tusk-{kind}-{safe[:40].strip('-') or 'p'}-{digest}"


def _labels(want: SpoutLaunch) -> dict[str, str]:
    return {
        MANAGED_BY: MANAGER,
        COMPONENT: want.kind,
        PIPELINE_LABEL: label_value(want.spec.name),
    }


def _env(want: SpoutLaunch) -> dict[str, str]:
    """What the command is told, as on the local runner (see ``background.spouts``)."""
    spec = want.spec
    env = {
        "PPS_PIPELINE_NAME": spec.pipeline.name,
        "PPS_PROJECT_NAME": spec.project,
        "TUSK_PIPELINE": spec.name,
        "TUSK_OUTPUT_REPO": spec.name,
        "TUSK_OUTPUT_BRANCH": spec.output_branch,
    }
    if spec.spout is not None:
        env["TUSK_SPOUT"] = spec.name
        if spec.spout.overwrite:
            env["TUSK_SPOUT_OVERWRITE"] = "true"
    if spec.exposed is not None:
        env["TUSK_SERVICE_PORT"] = str(spec.exposed.internal_port)
    if spec.service is not None:
        for name, _, commit in want.inputs:
            env[name] = f"{PFS_ROOT}/{name}"
            env[f"{name}_COMMIT"] = commit
    return {**spec.transform.env, **env}


def deployment_manifest(
    want: SpoutLaunch,
    template: PodTemplate,
    *,
    token: str | None = None,
    credential: str | None = None,
    credential_expires: str | None = None,
) -> dict[str, Any]:
    """The Deployment of a spout or service pipeline. ``token``: its credential (None: the
    repo service checks none, or the template's token Secret); ``credential``: the key it is
    revoked by, and when it expires (kept in annotations)."""
    spec = want.spec
    name = workload_name(want.kind, spec.name)
    requests, limits = spec.resource_requests, spec.resource_limits
    resources = requests.model_dump(exclude_none=True) if requests else {}
    limits_ = limits.model_dump(exclude_none=True) if limits else {}
    scheduling = spec.scheduling_spec
    # The worker pod's shape, then the pipeline's command in place of the worker.
    pod = pod_manifest(
        ShardLaunch(
            job=name,
            pipeline=spec.name,
            shard=0,
            attempt=0,
            output_repo=spec.name,
            meta_commit="",
            image=spec.transform.image,
            resource_requests=resources,
            resource_limits=limits_,
            env=_env(want),
            secrets=spec.transform.secrets,
            node_selector=dict(scheduling.node_selector) if scheduling else {},
            priority_class_name=scheduling.priority_class_name if scheduling else None,
            image_pull_secrets=spec.transform.image_pull_secrets,
            token=token,
        ),
        template,
    )
    pod_spec = pod["spec"]
    pod_spec["restartPolicy"] = "Always"  # Kubernetes restarts a dead command, with back-off
    container = pod_spec["containers"][0]
    container["name"] = want.kind
    container["command"] = list(spec.transform.cmd)
    container.pop("args", None)
    if spec.exposed is not None:
        container["ports"] = [{"name": "service", "containerPort": spec.exposed.internal_port}]
    if spec.service is not None:
        stage = {
            key: value
            for key, value in container.items()
            if key in ("image", "env", "volumeMounts", "securityContext", "imagePullPolicy")
        }
        stage["env"] = [e for e in container["env"] if e["name"] in _STAGE_ENV]
        pod_spec["initContainers"] = [
            {
                **stage,
                "name": "stage",
                "command": [*template.worker_command, "stage"],
                "args": [f"{n}={repo}@{commit}" for n, repo, commit in want.inputs],
            }
        ]
    labels = _labels(want)
    pod_annotations = {PIPELINE_ANNOTATION: spec.name}
    if want.inputs:
        pod_annotations[INPUTS_ANNOTATION] = ",".join(
            f"{n}={repo}@{commit}" for n, repo, commit in want.inputs
        )
    deployment: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "labels": {**labels, VERSION_LABEL: str(want.version)},
            "annotations": {PIPELINE_ANNOTATION: spec.name},
        },
        "spec": {
            "replicas": 1,
            # A service rolls on every input commit: keep few old ReplicaSets, not ten.
            "revisionHistoryLimit": 2,
            "selector": {"matchLabels": labels},
            # A spout's commits must come from one process at a time: the old pod goes first.
            "strategy": {"type": "Recreate" if want.kind == SPOUT else "RollingUpdate"},
            "template": {
                "metadata": {
                    "labels": {**labels, VERSION_LABEL: str(want.version)},
                    "annotations": pod_annotations,
                },
                "spec": pod_spec,
            },
        },
    }
    annotations = deployment["metadata"]["annotations"]
    annotations[SPEC_HASH_ANNOTATION] = spec_hash(deployment)
    if credential is not None:
        annotations[CREDENTIAL_ANNOTATION] = credential
    if credential_expires is not None:
        annotations[CREDENTIAL_EXPIRES_ANNOTATION] = credential_expires
    return deployment


def spec_hash(deployment: Mapping[str, Any]) -> str:
    """A digest of what the Deployment was made from, without its credential (a restarted
    scheduler issues none, yet must recognise the Deployment as what it wants)."""
    unsecret = json.loads(json.dumps(deployment))
    unsecret["metadata"]["annotations"].pop(SPEC_HASH_ANNOTATION, None)
    for container in (
        *unsecret["spec"]["template"]["spec"]["containers"],
        *unsecret["spec"]["template"]["spec"].get("initContainers", ()),
    ):
        container["env"] = [e for e in container.get("env", []) if e["name"] != "TUSK_TOKEN"]
    text = json.dumps(unsecret, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def service_manifest(want: SpoutLaunch) -> dict[str, Any]:
    """The Service in front of a service pipeline's pod (or a spout's, with ``spout.service``),
    named as its Deployment, with Pachyderm's meaning: port ``internal_port`` to the pod's
    ``internal_port``; with ``external_port``, a NodePort on it (``service.type`` and
    ``service.annotations`` as given)."""
    service = want.spec.exposed
    assert service is not None
    labels = _labels(want)
    port: dict[str, Any] = {
        "name": "service",
        "port": service.internal_port,
        "targetPort": service.internal_port,
        "protocol": "TCP",
    }
    kind = service.type or ("NodePort" if service.external_port else "ClusterIP")
    if service.external_port is not None and kind != "ClusterIP":
        port["nodePort"] = service.external_port
    manifest: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": workload_name(want.kind, want.spec.name),
            "labels": labels,
            "annotations": {**service.annotations, PIPELINE_ANNOTATION: want.spec.name},
        },
        "spec": {"type": kind, "selector": labels, "ports": [port]},
    }
    manifest["metadata"]["annotations"][SPEC_HASH_ANNOTATION] = _digest(manifest)
    return manifest


def _digest(manifest: Mapping[str, Any]) -> str:
    text = json.dumps(manifest, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]
