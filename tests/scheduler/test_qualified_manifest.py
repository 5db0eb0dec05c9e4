"""A pipeline of a project (``p/edges``) becomes Kubernetes names and labels that hold no '/'
and never stand for another pipeline."""

from __future__ import annotations

import re

from tusk_scheduler.runners.base import ShardLaunch
from tusk_scheduler.runners.kubernetes import PodTemplate, label_value
from tusk_scheduler.runners.kubernetes.deployments import workload_name
from tusk_scheduler.runners.kubernetes.manifest import pod_manifest

# A pod's name: a DNS subdomain; a label value: ≤ 63 of [A-Za-z0-9._-], alphanumeric ends.
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


def launch(pipeline: str) -> ShardLaunch:
    return ShardLaunch(
        job="a" * 32,
        pipeline=pipeline,
        shard=0,
        attempt=0,
        output_repo=pipeline,
        meta_commit="c" * 32,
    )


def test_a_qualified_pipeline_makes_a_valid_pod() -> None:
    pod = pod_manifest(launch("vision/Edges"), PodTemplate(repo_url="http://repo:8081"))
    meta = pod["metadata"]
    assert DNS_SUBDOMAIN.fullmatch(meta["name"]), meta["name"]
    assert "vision-edges" in meta["name"]
    for key, value in meta["labels"].items():
        assert LABEL_VALUE.fullmatch(value), (key, value)
    assert meta["labels"]["tusk.io/pipeline"] == "vision.Edges"
    assert meta["annotations"]["tusk.io/pipeline"] == "vision/Edges"


def test_labels_of_names_that_differ_only_by_the_slash_differ() -> None:
    names = ["p/x", "p-x", "p_x", "px", "p", "x"]
    labels = [label_value(n) for n in names]
    assert len(set(labels)) == len(names), labels
    # 31 + 1 + 31 characters: qualified, still a label without a digest.
    long = "p" * 31 + "/" + "x" * 31
    assert label_value(long) == "p" * 31 + "." + "x" * 31


def test_a_spout_of_a_project_gets_its_own_valid_workload_name() -> None:
    dns_label = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    names = {workload_name("spout", p) for p in ("vision/feed", "vision-feed", "feed")}
    assert len(names) == 3
    assert all(dns_label.fullmatch(n) for n in names), names
