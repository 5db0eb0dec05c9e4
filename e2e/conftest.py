"""Fixtures shared by the scenarios: the two-node cluster, started once for every module."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from e2e import kube
from e2e.common import ROOT, run, tusk_json, wait_until


@pytest.fixture(scope="session")
def cluster() -> Iterator[dict[str, str]]:
    """The cluster of e2e/cluster.sh with the chart's images in both nodes. One already up
    (started by hand to iterate on a scenario) is used and left running: whoever started it
    stops it."""
    started_here = not kube.running()
    if started_here:
        run([*kube.CLUSTER, "start"], env=os.environ.copy(), timeout=1800)
    try:
        env = kube.kube_env()
        run([*kube.CLUSTER, "load", *kube.chart_images()], env=os.environ.copy(), timeout=1800)
        yield env
    finally:
        if started_here:
            run([*kube.CLUSTER, "stop"], env=os.environ.copy(), check=False)


@pytest.fixture(scope="session")
def release(cluster: dict[str, str]) -> Iterator[dict[str, str]]:
    """The chart with the development values, installed with ``--wait``, its four APIs
    forwarded to their default ports on the host (where the CLI looks for them)."""
    env = cluster
    from tests.deploy.tools import helm

    run(
        [
            str(helm()),
            "upgrade",
            "--install",
            "tusk",
            str(ROOT / "charts" / "tusk"),
            "-n",
            kube.NAMESPACE,
            "--create-namespace",
            "-f",
            str(ROOT / "charts" / "tusk" / "values-dev.yaml"),
            # The platform on node 1, workers on either: node 2 is the one a scenario takes
            # away, and the release's own pods (and its in-cluster database) must outlive it.
            "--set-json",
            'nodeSelector={"kubernetes.io/hostname":"tusk-node1"}',
            "--wait",
            "--timeout",
            "15m",
        ],
        env=env,
        timeout=1200,
    )
    forwards = [
        subprocess.Popen(
            ["kubectl", "-n", kube.NAMESPACE, "port-forward", f"svc/{svc}", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for svc, port in kube.PORTS.items()
    ]
    try:
        wait_until(
            "the APIs through port-forward",
            lambda: tusk_json("repo", "list") is not None,
            120,
            every=2,
        )
        yield env
    finally:
        for forward in forwards:
            forward.terminate()
            forward.wait(30)
        kube.kubectl("get", "pods", "-o", "wide", env=env, check=False)
