"""skaffold.yaml: builds every image, deploys the chart with the development values, forwards
the four APIs to their default ports, and has a minikube profile."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import CHART, ROOT, render

PORTS = {"repo": 8081, "trigger": 8082, "scheduler": 8083, "inference": 8080, "console": 8084}


@pytest.fixture(scope="module")
def skaffold() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "skaffold.yaml").read_text())


def test_every_dockerfile_is_built(skaffold: dict[str, Any]) -> None:
    artifacts = {a["image"]: a for a in skaffold["build"]["artifacts"]}
    dockerfiles = {
        str(p.relative_to(ROOT))
        for p in [
            *(ROOT / "services").glob("*/Dockerfile"),
            *(ROOT / "examples").glob("*/Dockerfile"),
        ]
    }
    assert {a["docker"]["dockerfile"] for a in artifacts.values()} == dockerfiles
    for artifact in artifacts.values():
        assert artifact["context"] == "."
        assert (ROOT / artifact["docker"]["dockerfile"]).is_file()
    credit = artifacts["tusk/credit"]
    assert credit["requires"] == [{"image": "tusk/worker", "alias": "TUSK_WORKER_IMAGE"}]


def test_the_chart_is_deployed_with_the_development_values(skaffold: dict[str, Any]) -> None:
    (release,) = skaffold["deploy"]["helm"]["releases"]
    assert (ROOT / release["chartPath"]).resolve() == CHART
    assert [ROOT / v for v in release["valuesFiles"]] == [CHART / "values-dev.yaml"]
    # the values skaffold sets exist in the chart (the schema rejects unknown keys)
    sets = [
        f"{k}={'x' if k.endswith('repository') else 'dev'}" for k in release["setValueTemplates"]
    ]
    render("-f", str(CHART / "values-dev.yaml"), *(a for s in sets for a in ("--set", s)))
    images = {v for v in release["setValueTemplates"].values() if v.startswith("{{.IMAGE_REPO_")}
    built = {a["image"] for a in skaffold["build"]["artifacts"]} - {"tusk/credit"}
    assert {re.sub(r"\W", "_", b) for b in built} == {i[len("{{.IMAGE_REPO_") : -2] for i in images}


def test_the_apis_are_forwarded_to_their_default_ports(skaffold: dict[str, Any]) -> None:
    forwards = {f["resourceName"]: f for f in skaffold["portForward"]}
    assert set(forwards) == {f"tusk-{name}" for name in PORTS}
    for name, port in PORTS.items():
        forward = forwards[f"tusk-{name}"]
        assert forward["resourceType"] == "service"
        assert forward["port"] == forward["localPort"] == port


def test_there_is_a_minikube_profile(skaffold: dict[str, Any]) -> None:
    profiles = {p["name"]: p for p in skaffold["profiles"]}
    assert "minikube" in profiles
    assert profiles["minikube"]["build"]["local"]["push"] is False
