"""Which waiting reasons of a worker pod end its shard, and which of those are worth another
pod: read from pod statuses as a kubelet writes them (messages copied from real kubelets)."""

from __future__ import annotations

from typing import Any

import pytest

from tusk_scheduler.runners.kubernetes.manifest import CONTAINER
from tusk_scheduler.runners.kubernetes.pod_state import pod_status

NO_SUCH_HOST = (
    'failed to pull and unpack image "docker.io/tusk/no-such-image:1": failed to resolve '
    'reference "docker.io/tusk/no-such-image:1": failed to do request: Head '
    '"https://registry-1.docker.io/v2/tusk/no-such-image/manifests/1": dial tcp: lookup '
    "registry-1.docker.io: no such host"
)
NOT_FOUND = (
    'rpc error: code = NotFound desc = failed to pull and unpack image "ghcr.io/acme/x:9": '
    'failed to resolve reference "ghcr.io/acme/x:9": ghcr.io/acme/x:9: not found'
)
TIMEOUT = (
    'failed to pull and unpack image "ghcr.io/acme/x:9": failed to copy: httpReadSeeker: '
    "failed open: failed to do request: Get ...: net/http: TLS handshake timeout"
)
NO_SECRET = 'secret "tusk-no-such-secret" not found'


def waiting(reason: str, message: str) -> dict[str, Any]:
    status = {"name": CONTAINER, "image": "i:1", "state": {"waiting": {"reason": reason}}}
    if message:
        status["state"]["waiting"]["message"] = message
    return {
        "metadata": {"name": "tusk-p-0-0"},
        "status": {"phase": "Pending", "containerStatuses": [status]},
    }


@pytest.mark.parametrize(
    ("reason", "message", "permanent"),
    [
        ("ErrImagePull", NO_SUCH_HOST, True),
        ("ErrImagePull", NOT_FOUND, True),
        ("ImagePullBackOff", f"Back-off pulling image: ErrImagePull: {NOT_FOUND}", True),
        ("ErrImagePull", TIMEOUT, False),
        ("ImagePullBackOff", 'Back-off pulling image "i:1"', False),
        ("InvalidImageName", 'Failed to apply default image tag "Bad:Name"', True),
        ("ErrImageNeverPull", "", True),
        ("CreateContainerConfigError", NO_SECRET, True),
        ("CreateContainerError", "context deadline exceeded", False),
    ],
)
def test_a_pod_that_cannot_start_says_whether_another_would(
    reason: str, message: str, permanent: bool
) -> None:
    status = pod_status(waiting(reason, message))
    assert (status.state, status.exit_code) == ("exited", None)
    assert reason in status.detail
    assert status.permanent is permanent


def test_a_container_still_being_created_runs() -> None:
    status = pod_status(waiting("ContainerCreating", ""))
    assert status.running
    assert not status.permanent
