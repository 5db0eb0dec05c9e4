"""The Helm chart on a real two-node cluster (e2e/cluster.sh): every pod Ready, the credit
example with each shard a pod of `tusk/credit:latest`, a node lost mid-job, a missing image.

Run by `make e2e-kube` (e2e/run.sh starts the engine and builds the images first).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.common import ROOT, host_env, readme_block, run, tusk_json, wait_until

CLUSTER = ["bash", str(ROOT / "e2e" / "cluster.sh")]
NAMESPACE = "tusk"
PORTS = {"tusk-repo": 8081, "tusk-trigger": 8082, "tusk-scheduler": 8083, "tusk-inference": 8080}


def kube_env() -> dict[str, str]:
    env = host_env()
    env["KUBECONFIG"] = "/run/tusk-e2e/kube/admin.kubeconfig"
    bin_dir = run(["bash", str(ROOT / "e2e" / "kube" / "build.sh")], env=env).stdout.strip()
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    return env


def kubectl(*args: str, env: dict[str, str], check: bool = True) -> str:
    return run(["kubectl", "-n", NAMESPACE, *args], env=env, check=check).stdout


def pods(env: dict[str, str], selector: str | None = None) -> list[dict[str, Any]]:
    argv = ["get", "pods", "-o", "json", *(["-l", selector] if selector else [])]
    return list(json.loads(kubectl(*argv, env=env))["items"])


def ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def chart_images() -> list[str]:
    """Every image the chart with the development values and the examples run."""
    images = {f"tusk/{p.parent.name}:0.1.0" for p in ROOT.glob("services/*/Dockerfile")}
    images.add("tusk/credit:latest")
    dev = yaml.safe_load((ROOT / "charts" / "tusk" / "values-dev.yaml").read_text())
    defaults = yaml.safe_load((ROOT / "charts" / "tusk" / "values.yaml").read_text())
    for values in (defaults.get("dev", {}), dev.get("dev", {})):
        for backing in values.values():
            if isinstance(backing, dict):
                images.update(backing[k] for k in ("image", "initImage")
                              if isinstance(backing.get(k), str))
    return sorted(images)


@pytest.fixture(scope="module")
def cluster() -> Iterator[dict[str, str]]:
    run([*CLUSTER, "start"], env=os.environ.copy(), timeout=1800)
    try:
        env = kube_env()
        run([*CLUSTER, "load", *chart_images()], env=os.environ.copy(), timeout=1800)
        yield env
    finally:
        run([*CLUSTER, "stop"], env=os.environ.copy(), check=False)


@pytest.fixture(scope="module")
def release(cluster: dict[str, str]) -> Iterator[dict[str, str]]:
    env = cluster
    from tests.deploy.tools import helm

    run(
        [
            str(helm()),
            "install",
            "tusk",
            str(ROOT / "charts" / "tusk"),
            "-n",
            NAMESPACE,
            "--create-namespace",
            "-f",
            str(ROOT / "charts" / "tusk" / "values-dev.yaml"),
            "--wait",
            "--timeout",
            "15m",
        ],
        env=env,
        timeout=1200,
    )
    forwards = [
        subprocess.Popen(
            ["kubectl", "-n", NAMESPACE, "port-forward", f"svc/{svc}", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for svc, port in PORTS.items()
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
        kubectl("get", "pods", "-o", "wide", env=env, check=False)


def test_every_pod_of_the_chart_is_ready(release: dict[str, str]) -> None:
    running = [p for p in pods(release) if p["status"]["phase"] != "Succeeded"]
    assert running
    not_ready = [p["metadata"]["name"] for p in running if not ready(p)]
    assert not not_ready, not_ready
    nodes = {p["spec"]["nodeName"] for p in running}
    assert nodes <= {"tusk-node1", "tusk-node2"}


def test_credit_example_runs_its_shards_as_pods(
    release: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    workdir = tmp_path_factory.mktemp("k8s-walkthrough")
    (workdir / "examples").symlink_to(ROOT / "examples")
    result = run(
        ["bash", "-euxo", "pipefail", "-c", readme_block("Deploying")],
        cwd=workdir,
        env=release,
        timeout=1800,
    )
    assert "success" in result.stdout
    workers = pods(release, "app.kubernetes.io/component=worker")
    images = {c["image"] for p in workers for c in p["spec"]["containers"]}
    assert "tusk/credit:latest" in images, images
    assert all(p["status"]["phase"] == "Succeeded" for p in workers), [
        (p["metadata"]["name"], p["status"]["phase"]) for p in workers
    ]
    train = tusk_json("commit", "inspect", "train@master", env=release)["id"]
    model = next(m for m in tusk_json("model", "list", env=release) if m["name"] == "credit")
    assert model["parameters"]["model_commit"] == train


def _pipeline(workdir: Path, name: str, image: str, cmd: list[str], parallelism: int) -> Path:
    spec = {
        "pipeline": {"name": name},
        "input": {"pfs": {"repo": f"{name}-in", "branch": "master", "glob": "/*"}},
        "transform": {"image": image, "cmd": cmd},
        "parallelism_spec": {"constant": parallelism},
    }
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_an_image_that_does_not_exist_fails_the_job_within_a_minute(
    release: dict[str, str], tmp_path: Path
) -> None:
    env = release
    spec = _pipeline(tmp_path, "noimage", "tusk/does-not-exist:1", ["true"], 1)
    run(["tusk", "repo", "create", "noimage-in"], env=env)
    run(["tusk", "pipeline", "create", "-f", str(spec)], env=env)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("a\n")
    started = time.monotonic()
    run(["tusk", "put", "noimage-in@master:/", "-f", str(tmp_path / "d"), "-r"], env=env)

    def failed() -> dict[str, Any] | None:
        jobs = tusk_json("job", "list", "-p", "noimage", env=env)
        done = [j for j in jobs if j.get("state") in ("failure", "killed", "success")]
        return done[0] if done else None

    job = wait_until("the job to fail", failed, 120, every=2)
    assert time.monotonic() - started < 90
    assert job["state"] == "failure", job
    detail = json.dumps(tusk_json("job", "inspect", job["id"], env=env))
    assert "does-not-exist" in detail, detail


def test_a_node_lost_mid_job(release: dict[str, str], tmp_path: Path) -> None:
    """Fig. 2 of the seed: parallelism 4 over two nodes; node 2 dies mid-job; its pods are
    replaced on node 1, only unfinished datums run again, every datum is processed once."""
    env = release
    datums = 48
    data = tmp_path / "d"
    data.mkdir()
    for i in range(datums):
        (data / f"{i:03}.txt").write_text(f"{i}\n")
    # Each datum takes about five seconds and leaves one output file named after it.
    cmd = ["sh", "-c", "for f in /pfs/lost-in/*; do sleep 5; cp $f /pfs/out/; done"]
    spec = _pipeline(tmp_path, "lost", "tusk/worker:0.1.0", cmd, 4)
    run(["tusk", "repo", "create", "lost-in"], env=env)
    run(["tusk", "pipeline", "create", "-f", str(spec)], env=env)
    run(["tusk", "put", "lost-in@master:/", "-f", str(data), "-r"], env=env)

    def on_node2() -> list[str]:
        return [
            p["metadata"]["name"]
            for p in pods(env, "app.kubernetes.io/component=worker")
            if p["spec"].get("nodeName") == "tusk-node2" and p["status"]["phase"] == "Running"
        ]

    wait_until("a worker pod running on tusk-node2", on_node2, 300, every=1)
    run([*CLUSTER, "stop-node", "2"], env=os.environ.copy())
    run(["kubectl", "delete", "node", "tusk-node2", "--wait=false"], env=env)
    jobs = tusk_json("job", "list", "-p", "lost", env=env)
    job_id = jobs[0]["id"]
    run(["tusk", "job", "wait", job_id], env=env, timeout=1200)
    job = tusk_json("job", "inspect", job_id, env=env)
    assert job["state"] == "success", job
    listing = run(["tusk", "ls", "lost@master:/"], env=env).stdout
    assert sum(f"{i:03}.txt" in listing for i in range(datums)) == datums
    run([*CLUSTER, "start-node", "2"], env=os.environ.copy())
