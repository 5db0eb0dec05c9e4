"""Pachyderm's scheduling fields on the Kubernetes runner's pods: GPUs of either form under
their device plugin's name, disk as ephemeral-storage, scheduling_spec and image pull secrets
added to the scheduler's own."""

from __future__ import annotations

import json

from tusk.pipelines import load_spec
from tusk_scheduler.runners.base import ShardLaunch
from tusk_scheduler.runners.kubernetes import PodTemplate, pod_manifest


def test_a_pachyderm_spec_shapes_the_pod() -> None:
    spec = load_spec(
        json.dumps(
            {
                "pipeline": {"name": "train"},
                "input": {"pfs": {"repo": "data", "glob": "/"}},
                "transform": {
                    "image": "registry.example.com/train:1",
                    "cmd": ["python3", "/train.py"],
                    "imagePullSecrets": ["regcred"],
                },
                "resourceLimits": {"gpu": {"type": "amd.com/gpu", "number": 2}, "disk": "10Gi"},
                "resourceRequests": {"memory": "256MB", "cpu": 1},
                "schedulingSpec": {"nodeSelector": {"pool": "gpu"}, "priorityClassName": "high"},
            }
        )
    )
    assert spec.resource_limits is not None
    assert spec.resource_requests is not None
    assert spec.scheduling_spec is not None
    launch = ShardLaunch(
        job="j" * 32,
        pipeline="train",
        shard=0,
        attempt=0,
        output_repo="train",
        meta_commit="m" * 32,
        image=spec.transform.image,
        resource_requests=spec.resource_requests.model_dump(exclude_none=True),
        resource_limits=spec.resource_limits.model_dump(exclude_none=True),
        node_selector=spec.scheduling_spec.node_selector,
        priority_class_name=spec.scheduling_spec.priority_class_name,
        image_pull_secrets=spec.transform.image_pull_secrets,
    )
    template = PodTemplate(
        repo_url="http://repo:8081",
        node_selector={"zone": "a"},
        image_pull_secrets=("shared",),
    )
    pod = pod_manifest(launch, template)
    (container,) = pod["spec"]["containers"]
    assert container["resources"] == {
        "requests": {"memory": "256M", "cpu": "1"},
        "limits": {"amd.com/gpu": "2", "ephemeral-storage": "10Gi"},
    }
    assert pod["spec"]["nodeSelector"] == {"zone": "a", "pool": "gpu"}
    assert pod["spec"]["priorityClassName"] == "high"
    assert pod["spec"]["imagePullSecrets"] == [{"name": "shared"}, {"name": "regcred"}]
