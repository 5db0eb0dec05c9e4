"""`skaffold dev` itself on the real two-node cluster, with no registry; part of `make
e2e-kube` / `make e2e-all` (after test_skaffold.py), alone with `make e2e-skaffold-dev`.

Either order works: each skaffold run labels every pod template with its own run id, so this
deploy replaces the development PostgreSQL, Kafka and versitygw pods whatever ran before, and
the new versitygw pod creates its bucket itself (a bucket Job, run only when its spec changed,
left it missing after a second skaffold run: the repo never became Ready and `helm upgrade
--wait` timed out).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from e2e import kube
from e2e.common import ROOT, run
from e2e.test_skaffold import skaffold, untag_skaffold_builds

__all__ = ["skaffold"]  # the fixture, shared with test_skaffold.py


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
