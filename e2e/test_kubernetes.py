"""The Helm chart on a real two-node cluster (e2e/cluster.sh): every pod Ready, the credit
example with each shard a pod of `tusk/credit:latest`, a node lost mid-job, a missing image, a
spout's log read from its pod.

Run by `make e2e-kube` (e2e/run.sh starts the engine and builds the images first).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from e2e import kube
from e2e.common import ROOT, readme_block, run, tusk_json, wait_until
from e2e.kube import (
    CLUSTER,
    UNPULLABLE_WITHIN,
    job_pods_prefix,
    kubectl,
    kubelet_events,
    pipeline_spec,
    pods,
    run_to_end,
)


def _ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def test_every_pod_of_the_chart_is_ready(release: dict[str, str]) -> None:
    running = [p for p in pods(release) if p["status"]["phase"] != "Succeeded"]
    assert running
    not_ready = [p["metadata"]["name"] for p in running if not _ready(p)]
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
    # The runner deletes a shard's pod once the shard is recorded; the kubelets' events stay.
    started = shard_pods_started(release)
    for pipeline in ("preprocess", "train"):
        ran = {pod: image for pod, image in started.items() if pod.startswith(f"tusk-{pipeline}-")}
        assert ran, started
        assert set(ran.values()) == {"tusk/credit:latest"}, started
    train = tusk_json("commit", "inspect", "train@master", env=release)["id"]
    model = next(m for m in tusk_json("model", "list", env=release) if m["name"] == "credit")
    assert model["parameters"]["model_commit"] == train


def shard_pods_started(env: dict[str, str]) -> dict[str, str]:
    """Pod -> image of every container a kubelet started, from the namespace's events."""
    events = json.loads(kubectl("get", "events", "-o", "json", env=env))["items"]
    started: dict[str, str] = {}
    for event in events:
        found = re.search(r'image "([^"]+)"', event.get("message", ""))
        if event["involvedObject"]["kind"] == "Pod" and event["reason"] == "Pulled" and found:
            started[event["involvedObject"]["name"]] = found.group(1)
    return started


def test_an_image_that_does_not_exist_fails_the_job_within_a_minute(
    release: dict[str, str], tmp_path: Path
) -> None:
    env = release
    spec = pipeline_spec(tmp_path, "noimage", "tusk/does-not-exist:1", ["true"])
    job = run_to_end(env, tmp_path, spec, within=UNPULLABLE_WITHIN)
    assert job["state"] == "failure", job
    assert "does-not-exist" in job["reason"], job
    assert "could not be pulled" in job["reason"], job
    # No registry knows the name: a second pod would fail the same way, so none was made.
    assert "not retried" in job["reason"], job
    described = kubelet_events(env, job_pods_prefix("noimage"))
    assert "does-not-exist" in described, described


def test_a_node_lost_mid_job(release: dict[str, str], tmp_path: Path) -> None:
    """Fig. 2 of the seed: parallelism 4 over two nodes; node 2 dies mid-job; its pods are
    replaced on node 1, only unfinished datums run again, every datum is processed once."""
    env = release
    # The walkthrough's pipelines keep warm pods, which hold their requests (train's: a whole
    # CPU) on node 2 and would keep this job's pods off it: stopped, their warm pods go.
    for pipeline in tusk_json("pipeline", "list", env=env):
        run(["tusk", "pipeline", "stop", pipeline["name"]], env=env)
    wait_until(
        "the stopped pipelines' warm pods to go",
        lambda: not pods(env, "tusk.io/warm-for"),
        120,
    )
    datums = 48
    data = tmp_path / "d"
    data.mkdir()
    for i in range(datums):
        (data / f"{i:03}.txt").write_text(f"{i}\n")
    # Each datum takes about five seconds and leaves one output file named after it.
    cmd = ["sh", "-c", "for f in /pfs/lost-in/*; do sleep 5; cp $f /pfs/out/; done"]
    spec = pipeline_spec(tmp_path, "lost", "tusk/worker:0.1.0", cmd, parallelism=4)
    run(["tusk", "repo", "create", "lost-in"], env=env)
    run(["tusk", "pipeline", "create", "-f", str(spec)], env=env)
    run(["tusk", "put", "lost-in@master:/", "-f", str(data), "-r"], env=env)

    def on_node2() -> dict[str, int]:
        # This job's shard pods only (warm pods of earlier pipelines may be there too).
        return {
            p["metadata"]["name"]: int(p["metadata"]["labels"]["tusk.io/shard"])
            for p in pods(
                env, "app.kubernetes.io/component=worker,tusk.io/pipeline=lost,tusk.io/job"
            )
            if p["spec"].get("nodeName") == "tusk-node2" and p["status"]["phase"] == "Running"
        }

    lost = wait_until("a worker pod running on tusk-node2", on_node2, 300, every=1)
    job_id = tusk_json("job", "list", "-p", "lost", env=env)[0]["id"]
    try:
        run([*CLUSTER, "stop-node", "2"], env=os.environ.copy())
        run(["kubectl", "delete", "node", "tusk-node2", "--wait=false"], env=env)
        run(["tusk", "job", "wait", job_id], env=env, timeout=1200)
    finally:
        run([*CLUSTER, "start-node", "2"], env=os.environ.copy())
        wait_until(
            "tusk-node2 Ready again",
            lambda: (
                "True"
                in kubectl(
                    "get",
                    "node",
                    "tusk-node2",
                    "-o",
                    "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                    env=env,
                    check=False,
                )
            ),
            300,
            every=2,
        )
    job = tusk_json("job", "inspect", job_id, env=env)
    assert job["state"] == "success", job
    assert job["counts"]["processed"] == datums, job
    # Every datum once: one success each, one output each, named after its input.
    results = tusk_json("datum", "list", job_id, env=env)
    assert len(results) == datums, results
    assert {d["state"] for d in results} == {"success"}, results
    outputs = sorted(o["path"].lstrip("/") for d in results for o in d["outputs"])
    assert outputs == [f"{i:03}.txt" for i in range(datums)], outputs
    listing = run(["tusk", "ls", "lost@master:/"], env=env).stdout
    assert sum(f"{i:03}.txt" in listing for i in range(datums)) == datums
    # The lost pods' shards ran again on node 1, as a later attempt: in a pod made for it
    # (named after the shard and attempt) or in the pipeline's warm pod, made once another
    # shard had ended (named after the pipeline only: the scheduler's record says which).
    placed = kube.pods_scheduled(env)
    scheduler = env.get("TUSK_SCHEDULER_URL", "http://127.0.0.1:8083")
    shards = {
        s["shard"]: s
        for s in httpx.get(f"{scheduler}/v1/jobs/{job_id}", timeout=30).json()["shards"]
    }
    for name, shard in lost.items():
        last = shards[shard]
        assert last["attempt"] > 0, (name, last)
        assert last["handle"] != name, (name, last)
        assert placed.get(last["handle"]) == "tusk-node1", (name, last, placed)
        prefix = name.rsplit("-", 1)[0]
        retried = [p for p in placed if p.startswith(f"{prefix}-") and p != name]
        assert all(placed[p] == "tusk-node1" for p in retried), placed


def test_a_spouts_log_is_read_and_followed_from_its_pod(
    release: dict[str, str], tmp_path: Path
) -> None:
    """A spout of a project runs as a Deployment; `tusk logs -p PROJECT/SPOUT` prints its pod's
    log, and `-f` follows it (each line once) without kubectl."""
    env = release
    run(["tusk", "project", "create", "e2e"], env=env)
    spec = tmp_path / "ticker.yaml"
    ticks = 'i=0; while true; do echo "tick $i"; i=$((i+1)); sleep 1; done'
    spec.write_text(
        json.dumps(
            {
                "pipeline": {"name": "ticker", "project": {"name": "e2e"}},
                "spout": {},
                "transform": {"image": "tusk/worker:0.1.0", "cmd": ["sh", "-c", ticks]},
            }
        )
    )
    run(["tusk", "pipeline", "create", "-f", str(spec)], env=env)
    try:
        printed = wait_until(
            "the spout's pod to log a tick",
            lambda: re.findall(
                r"^tick (\d+)$", run(["tusk", "logs", "-p", "e2e/ticker"], env=env).stdout, re.M
            ),
            300,
            every=2,
        )
        seen = int(printed[-1])
        follower = subprocess.Popen(
            ["tusk", "logs", "-p", "e2e/ticker", "-f"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        lines: list[str] = []
        out = follower.stdout
        assert out is not None
        reader = threading.Thread(target=lambda: lines.extend(iter(out.readline, "")))
        reader.start()
        try:
            wait_until(
                "ticks logged after `tusk logs -f` began",
                lambda: f"tick {seen + 3}\n" in lines,
                120,
            )
        finally:
            follower.send_signal(signal.SIGINT)
            follower.wait(30)
            reader.join(30)
        followed = [int(t) for t in re.findall(r"^tick (\d+)$", "".join(lines), re.M)]
        assert followed == list(range(followed[0], followed[-1] + 1)), followed  # each once
    finally:
        run(["tusk", "pipeline", "delete", "e2e/ticker"], env=env)  # and its output repo
        run(["tusk", "project", "delete", "e2e"], env=env)
