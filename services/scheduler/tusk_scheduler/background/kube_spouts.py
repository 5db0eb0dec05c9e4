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

from tusk.errors import TuskError, Unavailable
from tusk.wire.spouts import SpoutPlace
from tusk_scheduler.domain.credentials import SPOUT_RENEW_BEFORE, SpoutCredentials
from tusk_scheduler.runners.base import ShardLaunch, SpoutLaunch

if TYPE_CHECKING:  # kubernetes-asyncio is loaded only by schedulers that use it
    from tusk_scheduler.runners.kubernetes.manifest import PodTemplate
    from tusk_scheduler.runners.kubernetes.workloads import Workloads

log = structlog.get_logger()

LOG_TAIL_LINES = 1000  # of a pod's log, per read: the end shown, and what a follower is sent


def lines_after(text: str, pod: str, after: str | None) -> tuple[str, str | None]:
    """A pod log read with timestamps: its lines without them, keeping those after the cursor
    ``after`` (``<pod>/<timestamp>`` of the last line sent; all of them if the pod changed),
    and the cursor after its last line."""
    kept: list[str] = []
    last: str | None = None
    seen_pod, _, seen_stamp = (after or "").partition("/")
    for line in text.splitlines(keepends=True):
        stamp, _, rest = line.partition(" ")
        key = _stamp_key(stamp)
        last = key
        if seen_pod == pod and key <= seen_stamp:
            continue
        kept.append(rest)
    if last is None:
        return "", after if seen_pod == pod else None
    return "".join(kept), f"{pod}/{last}"


def _stamp_key(stamp: str) -> str:
    """An RFC 3339 UTC time as the kubelet writes it (its fraction trimmed of zeros) in a form
    that sorts as the time does: the fraction to nine digits."""
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    return f"{whole}.{fraction:0<9}Z"


class KubeWorkloads:
    def __init__(self, workloads: Workloads) -> None:
        self.workloads = workloads
        self._refused: dict[str, str] = {}  # deployment name -> the spec hash refused

    async def where(
        self,
        pipeline: str,
        kind: Literal["spout", "service"],
        *,
        exposed: bool,
        after: str | None = None,
    ) -> SpoutPlace:
        from tusk_scheduler.runners.kubernetes.deployments import workload_name

        name = workload_name(kind, pipeline)
        found = next(
            (d for d in await self.workloads.deployments() if d["metadata"]["name"] == name), None
        )
        namespace = self.workloads.namespace
        status = (found or {}).get("status") or {}
        where = (
            f"Deployment {name} in namespace {namespace} "
            f"({status.get('readyReplicas') or 0} of 1 ready)"
            if found is not None
            else f"no Deployment {name} in namespace {namespace} yet (the leading scheduler "
            "makes it on its next look)"
        )
        logs, cursor = "", after
        if found is not None:
            logs, cursor = await self._log(found, kind, after)
        return SpoutPlace(
            pipeline=pipeline,
            kind=kind,
            runner="kubernetes",
            running=found is not None,
            where=where,
            namespace=namespace,
            deployment=name,
            service=name if exposed else None,
            logs=logs,
            log_cursor=cursor,
        )

    async def _log(
        self, deployment: dict[str, Any], kind: str, after: str | None
    ) -> tuple[str, str | None]:
        """The log of the Deployment's newest pod (the command's container): its end, or what
        follows ``after``; nothing while no pod has started its command."""
        labels = deployment["spec"]["selector"]["matchLabels"]
        pods = await self.workloads.pods(",".join(f"{k}={v}" for k, v in labels.items()))
        if not pods:
            return "", after
        pod = max(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "")
        name = pod["metadata"]["name"]
        try:
            text = await self.workloads.pod_log(name, kind, tail_lines=LOG_TAIL_LINES)
        except TuskError as e:  # its container is not running yet, or its node is gone
            log.debug("no log from the pod", pod=name, error=e.message)
            return "", after
        return lines_after(text, name, after)

    async def prune_warm(self, keep: Mapping[str, ShardLaunch]) -> None:
        """Warm worker pods only for the pipelines in ``keep``, as their launches make them."""
        await self.workloads.runner.prune_warm(keep)

    async def reconcile(
        self, wanted: Mapping[str, SpoutLaunch], credentials: SpoutCredentials
    ) -> None:
        from tusk_scheduler.runners.kubernetes.deployments import (
            CREDENTIAL_ANNOTATION,
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
            if name not in desired or desired[name].spec.exposed is None:
                await api.delete("services", name)
        for name, want in desired.items():
            try:
                await self._deploy(name, want, deployments.get(name), credentials)
                if want.spec.exposed is not None:
                    await self._expose(name, want, services.get(name))
            except Unavailable:
                raise  # the apiserver or the repo service: the next look tries again
            except TuskError as e:
                # This pipeline's objects are refused (a bad port, a quota): said once per
                # spec, and the other pipelines go on.
                digest = spec_hash_of(want, api.runner.template)
                if self._refused.get(name) != digest:
                    self._refused[name] = digest
                    log.warning(
                        f"{want.kind} not deployed", pipeline=want.spec.name, deployment=name,
                        namespace=namespace, error=e.message,
                    )  # fmt: skip

    async def _deploy(
        self,
        name: str,
        want: SpoutLaunch,
        existing: dict[str, Any] | None,
        credentials: SpoutCredentials,
    ) -> None:
        from tusk_scheduler.runners.kubernetes.deployments import (
            CREDENTIAL_ANNOTATION,
            SPEC_HASH_ANNOTATION,
            deployment_manifest,
        )

        api = self.workloads
        annotations: dict[str, Any] = (existing or {}).get("metadata", {}).get("annotations") or {}
        digest = spec_hash_of(want, api.runner.template)
        same = annotations.get(SPEC_HASH_ANNOTATION) == digest
        if existing is not None and same and not _credential_due(annotations, credentials):
            return  # adopted as it is
        if self._refused.get(name) == digest:
            return  # refused as it is; a change of the pipeline tries again
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
        self._refused.pop(name, None)
        if existing is not None:
            await credentials.revoke(annotations.get(CREDENTIAL_ANNOTATION))
        log.info(
            f"{want.kind} {'replaced' if existing else 'created'}", pipeline=want.spec.name,
            version=want.version, deployment=name, namespace=api.namespace,
            inputs={n: commit for n, _, commit in want.inputs} or None,
            why=None if existing is None else (
                "the pipeline or its inputs changed" if not same else "its credential is renewed"
            ),
        )  # fmt: skip

    async def _expose(self, name: str, want: SpoutLaunch, current: dict[str, Any] | None) -> None:
        from tusk_scheduler.runners.kubernetes.deployments import (
            SPEC_HASH_ANNOTATION,
            service_manifest,
        )

        service = service_manifest(want)
        digest = service["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
        if current is not None and (
            (current["metadata"].get("annotations") or {}).get(SPEC_HASH_ANNOTATION) == digest
        ):
            return
        await self.workloads.apply_service(service, current)
        port = service["spec"]["ports"][0]
        log.info(
            "service exposed", pipeline=want.spec.name, service=name,
            namespace=self.workloads.namespace, type=service["spec"]["type"],
            port=port["port"], node_port=port.get("nodePort"),
        )  # fmt: skip


def spec_hash_of(want: SpoutLaunch, template: PodTemplate) -> str:
    from tusk_scheduler.runners.kubernetes.deployments import (
        SPEC_HASH_ANNOTATION,
        deployment_manifest,
    )

    digest: str = deployment_manifest(want, template)["metadata"]["annotations"][
        SPEC_HASH_ANNOTATION
    ]
    return digest


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
