"""Spouts and service pipelines on the Kubernetes runner: each one a Deployment (and a
service's Service), made to match the pipelines that should run.

Each look (``reconcile``) lists the objects that exist by their labels, so that a restarted
scheduler adopts them rather than making them again: a Deployment whose spec hash matches what
is wanted is left alone; one that differs (a new pipeline version, an input that moved, a
credential near its expiry) is replaced, which rolls its pod, and its old credential revoked;
one whose pipeline is stopped or deleted is deleted, with its Service. Kubernetes restarts a
command that dies (``restartPolicy: Always``), with its own growing back-off.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import structlog

from tusk.wire.spouts import SpoutPlace
from tusk_scheduler.domain.credentials import SPOUT_RENEW_BEFORE, SpoutCredentials
from tusk_scheduler.runners.base import SpoutLaunch

if TYPE_CHECKING:  # kubernetes-asyncio is loaded only by schedulers that use it
    from tusk_scheduler.runners.kubernetes.workloads import Workloads

log = structlog.get_logger()


class KubeWorkloads:
    def __init__(self, workloads: Workloads) -> None:
        self.workloads = workloads

    async def where(self, pipeline: str, kind: Literal["spout", "service"]) -> SpoutPlace:
        from tusk_scheduler.runners.kubernetes.deployments import workload_name

        name = workload_name(kind, pipeline)
        found = next(
            (d for d in await self.workloads.deployments() if d["metadata"]["name"] == name), None
        )
        namespace = self.workloads.namespace
        status = (found or {}).get("status") or {}
        where = (
            f"Deployment {name} in namespace {namespace} "
            f"({status.get('readyReplicas') or 0} of 1 ready; logs: "
            f"kubectl logs -n {namespace} deployment/{name})"
            if found is not None
            else f"no Deployment {name} in namespace {namespace} yet (the leading scheduler "
            "makes it on its next look)"
        )
        return SpoutPlace(
            pipeline=pipeline,
            kind=kind,
            runner="kubernetes",
            running=found is not None,
            where=where,
            namespace=namespace,
            deployment=name,
            service=name if kind == "service" else None,
        )

    async def reconcile(
        self, wanted: Mapping[str, SpoutLaunch], credentials: SpoutCredentials
    ) -> None:
        from tusk_scheduler.runners.kubernetes.deployments import (
            CREDENTIAL_ANNOTATION,
            SERVICE,
            SPEC_HASH_ANNOTATION,
            deployment_manifest,
            service_manifest,
            workload_name,
        )
        from tusk_scheduler.runners.kubernetes.manifest import PIPELINE_ANNOTATION

        api = self.workloads
        deployments = {d["metadata"]["name"]: d for d in await api.deployments()}
        namespace = api.namespace  # known once connected
        services = {s["metadata"]["name"]: s for s in await api.services()}
        desired = {workload_name(w.kind, name): w for name, w in wanted.items()}
        for name, found in deployments.items():
            if name not in desired:
                marks = found["metadata"].get("annotations") or {}
                await api.delete("deployments", name)
                await credentials.revoke(marks.get(CREDENTIAL_ANNOTATION))
                log.info(
                    "spout or service deleted", pipeline=marks.get(PIPELINE_ANNOTATION),
                    deployment=name, namespace=namespace,
                    why="the pipeline was stopped or deleted",
                )  # fmt: skip
        for name in services:
            if name not in desired or desired[name].kind != SERVICE:
                await api.delete("services", name)
        for name, want in desired.items():
            existing = deployments.get(name)
            manifest = deployment_manifest(want, api.runner.template)
            annotations: dict[str, Any] = (existing or {}).get("metadata", {}).get(
                "annotations"
            ) or {}
            same = annotations.get(SPEC_HASH_ANNOTATION) == (
                manifest["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
            )
            if existing is not None and same and not _credential_due(annotations, credentials):
                continue  # adopted as it is
            credential = await credentials.issue(want.spec)
            manifest = deployment_manifest(
                want,
                api.runner.template,
                token=credential.token if credential else None,
                credential=credential.key if credential else None,
                credential_expires=credential.expires_at.isoformat() if credential else None,
            )
            try:
                await api.apply_deployment(manifest, existing)
            except BaseException:
                if credential is not None:
                    await credentials.revoke(credential.key)
                raise
            if existing is not None:
                await credentials.revoke(annotations.get(CREDENTIAL_ANNOTATION))
            log.info(
                f"{want.kind} {'replaced' if existing else 'created'}", pipeline=want.spec.name,
                version=want.version, deployment=name, namespace=namespace,
                inputs={n: commit for n, _, commit in want.inputs} or None,
                why=None if existing is None else (
                    "the pipeline or its inputs changed" if not same
                    else "its credential is renewed"
                ),
            )  # fmt: skip
        for name, want in desired.items():
            if want.kind != SERVICE:
                continue
            service = service_manifest(want)
            current = services.get(name)
            digest = service["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
            if current is not None and (
                (current["metadata"].get("annotations") or {}).get(SPEC_HASH_ANNOTATION) == digest
            ):
                continue
            await api.apply_service(service, current)
            log.info(
                "service exposed", pipeline=want.spec.name, service=name, namespace=namespace,
                type=service["spec"]["type"], port=service["spec"]["ports"][0]["port"],
                node_port=service["spec"]["ports"][0].get("nodePort"),
            )  # fmt: skip


def _credential_due(annotations: Mapping[str, Any], credentials: SpoutCredentials) -> bool:
    """Whether the Deployment's credential must be renewed (or one issued: the services began
    checking tokens since it was made)."""
    from tusk_scheduler.runners.kubernetes.deployments import CREDENTIAL_EXPIRES_ANNOTATION

    if not credentials.enabled:
        return False
    expires = annotations.get(CREDENTIAL_EXPIRES_ANNOTATION)
    if not expires:
        return True
    try:
        at = datetime.fromisoformat(expires)
    except ValueError:
        return True
    return at - datetime.now(UTC) < SPOUT_RENEW_BEFORE
