"""skaffold against the real two-node cluster, with no registry: `skaffold build` (push:
false) into the engine, the built images loaded into each node's containerd, `skaffold render`
naming them and `skaffold deploy` rolling the chart onto them until every pod is Ready
(its status check); then `skaffold dev` redeploying an edit. It runs last: the roll-outs end
the other modules' port-forwards.

skaffold is built from its Go module (e2e/tools.sh skaffold, cached under ~/.cache/tusk).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
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


def scheduler_image(env: dict[str, str]) -> str:
    return kube.kubectl(
        "get",
        "deployment",
        "tusk-scheduler",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
        env=env,
    )


def test_skaffold_dev_rebuilds_and_redeploys_a_code_change(
    skaffold: str, release: dict[str, str], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """`skaffold dev` itself, for a bounded time: it builds, loads each image into both nodes
    (its build hook runs `cluster.sh load`), deploys and watches; a file added under
    examples/ (which the scheduler image copies) is rebuilt, loaded and rolled out, and the
    new scheduler pod holds it. The edit is made in a clone, never in this checkout."""
    work = tmp_path / "tusk"
    run(["git", "clone", "--quiet", str(ROOT), str(work)], env=os.environ.copy())
    env = {**release, "SKAFFOLD_UPDATE_CHECK": "false", "SKAFFOLD_INTERACTIVE": "false"}
    env["DOCKER_HOST"] = os.environ["DOCKER_HOST"]
    from tests.deploy.tools import helm

    env["PATH"] = f"{helm().parent}{os.pathsep}{env['PATH']}"
    # The loader runs with the cluster's own environment (its run directory, the engine).
    env["TUSK_SKAFFOLD_LOAD"] = " ".join([*kube.CLUSTER, "load"])
    if "TUSK_E2E_RUN_DIR" in os.environ:
        env["TUSK_E2E_RUN_DIR"] = os.environ["TUSK_E2E_RUN_DIR"]
    log_path = tmp_path / "skaffold-dev.log"
    log = log_path.open("w")
    dev = subprocess.Popen(
        [
            skaffold,
            "dev",
            "-p",
            "no-registry",
            "--kube-context",
            "tusk-e2e",
            "--cache-artifacts=false",
            "--port-forward=off",
            "--cleanup=false",
            "--trigger=polling",
            "--watch-poll-interval=1000",
        ],
        cwd=work,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    request.addfinalizer(lambda: untag_skaffold_builds(env))

    def watching(times: int, what: str, timeout: float) -> None:
        """Until skaffold has said "Watching for changes" ``times`` times; fails at once if
        it exits (wait_until would take that for a probe to retry)."""
        deadline = time.monotonic() + timeout
        while True:
            text = log_path.read_text(errors="replace")
            if dev.poll() is not None:
                raise AssertionError(f"skaffold dev exited {dev.returncode}:\n{text[-6000:]}")
            if text.count("Watching for changes") >= times:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}:\n{text[-6000:]}")
            time.sleep(2)  # the polling interval of a condition

    try:
        watching(1, "skaffold dev's first deploy", 3600)
        before = scheduler_image(env)
        assert before.startswith("tusk/scheduler:"), before

        marker = f"redeployed by skaffold dev {tmp_path.name}\n"
        (work / "examples" / "skaffold-dev-marker.txt").write_text(marker)
        watching(2, "skaffold dev's redeploy", 1800)
        after = scheduler_image(env)
        assert after != before, after
        kube.kubectl(
            "rollout",
            "status",
            "deployment/tusk-scheduler",
            "--timeout=600s",
            env=env,
        )
        found = kube.kubectl(
            "exec",
            "deployment/tusk-scheduler",
            "--",
            "cat",
            "/app/examples/skaffold-dev-marker.txt",
            env=env,
        )
        assert found == marker, found
    finally:
        dev.send_signal(signal.SIGINT)  # skaffold's Ctrl-C (the release stays: --cleanup=false)
        try:
            dev.wait(300)
        except subprocess.TimeoutExpired:
            dev.kill()
            dev.wait()
        log.close()
        print(log_path.read_text(errors="replace")[-8000:])
