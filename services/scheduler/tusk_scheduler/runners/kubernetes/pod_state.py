"""How a worker pod's shard stands, read from the pod alone.

Without a kubelet's word, how a pod ended is read from its status: the container's exit code
(``exited``); evicted, deleted, disrupted, or on a node that stopped answering (``lost``:
its unfinished datums run again); an image that cannot be pulled, a missing secret, or no node
to place it on for longer than ``unschedulable_timeout`` (``exited`` without an exit code and
with the reason, rather than a job that waits forever; ``permanent`` when a new pod of the same
spec would fail the same way: the scheduler then does not try again).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tusk_scheduler.runners.base import ShardHandle, ShardStatus
from tusk_scheduler.runners.kubernetes.manifest import (
    ATTEMPT_LABEL,
    CONTAINER,
    JOB_ANNOTATION,
    SHARD_LABEL,
)

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
# Of those, the ones a new pod of the same spec would meet again at once: no attempt is made.
PERMANENT_WAITING = {"InvalidImageName", "ErrImageNeverPull", "CreateContainerConfigError"}
# A pull that failed for one of these reasons fails the same way next time (the registry said
# so, or its name does not resolve); timeouts, refused connections and 5xx are worth retrying.
_PULL_NEVER = re.compile(
    r"not found|manifest unknown|no such host|pull access denied|repository does not exist"
    r"|unauthorized|authentication required|invalid reference format",
    re.IGNORECASE,
)


def permanent_waiting(reason: str, message: str) -> bool:
    """Whether a container waiting for ``reason`` can never start as its pod is specified."""
    if reason in PERMANENT_WAITING:
        return True
    if reason in ("ErrImagePull", "ImagePullBackOff"):
        return bool(_PULL_NEVER.search(message))
    return False


def container_status(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    for status in pod.get("status", {}).get("containerStatuses") or ():
        if status.get("name") == CONTAINER:
            return dict(status)
    return {}


def condition(pod: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for condition in pod.get("status", {}).get("conditions") or ():
        if condition.get("type") == kind:
            return dict(condition)
    return None


def terminal(pod: Mapping[str, Any]) -> bool:
    return pod.get("status", {}).get("phase") in ("Succeeded", "Failed")


def job_of(pod: Mapping[str, Any]) -> str | None:
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
    container = container_status(pod)
    terminated = (container.get("state") or {}).get("terminated") or {}
    disruption = condition(pod, "DisruptionTarget")
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
            permanent=permanent_waiting(reason, message),
        )
    scheduled = condition(pod, "PodScheduled")
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


def unschedulable(pod: Mapping[str, Any]) -> bool:
    scheduled = condition(pod, "PodScheduled")
    return (
        scheduled is not None
        and scheduled.get("status") == "False"
        and scheduled.get("reason") == "Unschedulable"
    )


def handle_of(pod: Mapping[str, Any]) -> ShardHandle | None:
    meta = pod.get("metadata", {})
    labels = meta.get("labels") or {}
    job = job_of(pod)
    try:
        shard, attempt = int(labels[SHARD_LABEL]), int(labels[ATTEMPT_LABEL])
    except (KeyError, ValueError):
        return None
    if job is None:
        return None
    return ShardHandle(job=job, shard=shard, attempt=attempt, ref=str(meta["name"]))
