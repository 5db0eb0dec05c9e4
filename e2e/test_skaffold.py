"""skaffold against the real two-node cluster, with no registry: `skaffold build` (push:
false) into the engine, the built images loaded into each node's containerd, `skaffold render`
naming them and `skaffold deploy` rolling the chart onto them until every pod is Ready
(its status check). It runs last: the roll-out ends the other modules' port-forwards.
`skaffold dev` has a scenario of its own, run after this one (e2e/test_skaffold_dev.py).

skaffold is built from its Go module (e2e/tools.sh skaffold, cached under ~/.cache/tusk).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from e2e import kube
from e2e.common import ROOT, run

KEPT_TAGS = {"0.1.0", "latest"}


@pytest.fixture(scope="module")
def skaffold() -> str:
    return run(["bash", str(ROOT / "e2e" / "tools.sh"), "skaffold"], timeout=3600).stdout.split()[
        -1
    ]


def untag_skaffold_builds(env: dict[str, str]) -> None:
    """Drop the tags skaffold gave its builds (a commit id, an image id): each run makes new
    ones, and the images they hold would otherwise pile up in Docker, a few GiB a run. The tags
    images.py builds (0.1.0, latest) stay."""
    listed = run(
        ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", "tusk/*"], env=env
    ).stdout.split()
    ours = [t for t in listed if t.startswith("tusk/") and t.rsplit(":", 1)[1] not in KEPT_TAGS]
    if ours:
        run(["docker", "rmi", *ours], env=env, check=False)


def test_skaffold_builds_renders_and_deploys_without_a_registry(
    skaffold: str, release: dict[str, str], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    env = {**release, "SKAFFOLD_UPDATE_CHECK": "false", "SKAFFOLD_INTERACTIVE": "false"}
    env["DOCKER_HOST"] = os.environ["DOCKER_HOST"]
    from tests.deploy.tools import helm

    env["PATH"] = f"{helm().parent}{os.pathsep}{env['PATH']}"  # skaffold's deployer runs helm
    built = tmp_path / "build.json"
    common = ["-p", "no-registry", "--kube-context", "tusk-e2e"]
    run([skaffold, "build", *common, "--file-output", str(built)], env=env, timeout=3600)
    request.addfinalizer(lambda: untag_skaffold_builds(env))
    artifacts = json.loads(built.read_text())["builds"]
    tags = {a["imageName"]: a["tag"] for a in artifacts}
    assert set(tags) >= {
        "tusk/repo",
        "tusk/trigger",
        "tusk/scheduler",
        "tusk/inference",
        "tusk/worker",
        "tusk/credit",
    }, tags
    # No registry: what `push: false` built goes into each node's containerd by hand.
    run([*kube.CLUSTER, "load", *tags.values()], env=os.environ.copy(), timeout=1800)

    # render is offline: it takes no --kube-context (only the profile).
    rendered = run(
        [skaffold, "render", *common[:2], "-a", str(built), "--digest-source", "local"], env=env
    ).stdout
    images = {
        c["image"]
        for doc in yaml.safe_load_all(rendered)
        if doc and doc.get("kind") == "Deployment"
        for c in doc["spec"]["template"]["spec"]["containers"]
    }
    assert tags["tusk/repo"] in images, images

    run(
        [skaffold, "deploy", *common, "-a", str(built), "--status-check=true"],
        env=env,
        timeout=1800,
    )
    running = {
        c["image"]
        for p in kube.pods(env)
        if p["status"]["phase"] == "Running"
        for c in p["spec"]["containers"]
    }
    assert tags["tusk/repo"] in running, running
