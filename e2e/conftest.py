"""Fixtures shared by the scenarios: the two-node cluster, started once for every module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from e2e import kube


@pytest.fixture(scope="session")
def cluster() -> Iterator[dict[str, str]]:
    """The cluster of e2e/cluster.sh with the chart's images in both nodes."""
    with kube.cluster() as env:
        yield env


@pytest.fixture(scope="session")
def release(cluster: dict[str, str]) -> Iterator[dict[str, str]]:
    """The chart with the development values, installed with ``--wait``, its four APIs
    forwarded to their default ports on the host (where the CLI looks for them)."""
    with kube.release(cluster) as env:
        yield env
