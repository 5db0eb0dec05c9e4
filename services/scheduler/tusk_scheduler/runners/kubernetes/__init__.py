"""The Kubernetes runner: one pod per shard. Split by responsibility: :mod:`.manifest` (the
pod), :mod:`.pod_state` (how a pod's shard stands), :mod:`.config` (the API client),
:mod:`.watch` (the pod cache), :mod:`.runner` (the ``Runner`` itself)."""

from tusk_scheduler.runners.kubernetes.config import load_api_client
from tusk_scheduler.runners.kubernetes.manifest import (
    PodTemplate,
    label_value,
    pod_manifest,
    pod_name,
)
from tusk_scheduler.runners.kubernetes.pod_state import pod_status
from tusk_scheduler.runners.kubernetes.runner import KubernetesRunner

__all__ = [
    "KubernetesRunner",
    "PodTemplate",
    "label_value",
    "load_api_client",
    "pod_manifest",
    "pod_name",
    "pod_status",
]
