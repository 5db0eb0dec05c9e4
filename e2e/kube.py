"""The two-node cluster of e2e/cluster.sh, as the Kubernetes scenarios use it."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from e2e.common import ROOT, host_env, run, tusk_json, wait_until

CLUSTER = ["bash", str(ROOT / "e2e" / "cluster.sh")]
KUBE_DIR = Path(os.environ.get("TUSK_E2E_RUN_DIR", "/run/tusk-e2e")) / "kube"
KUBECONFIG = KUBE_DIR / "admin.kubeconfig"
NAMESPACE = "tusk"
# The chart's Services, forwarded to the ports the CLI defaults to.
PORTS = {"tusk-repo": 8081, "tusk-trigger": 8082, "tusk-scheduler": 8083, "tusk-inference": 8080}


def running() -> bool:
    """Whether a cluster of e2e/cluster.sh is up (its apiserver's process is alive)."""
    try:
        pid = int((KUBE_DIR / "kube-apiserver.pid").read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


def kube_env() -> dict[str, str]:
    env = host_env()
    env["KUBECONFIG"] = str(KUBECONFIG)
    bin_dir = run(["bash", str(ROOT / "e2e" / "kube" / "build.sh")], env=env).stdout.strip()
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    return env


def kubectl(*args: str, env: dict[str, str], check: bool = True) -> str:
    return run(["kubectl", "-n", NAMESPACE, *args], env=env, check=check).stdout


def pods(env: dict[str, str], selector: str | None = None) -> list[dict[str, Any]]:
    argv = ["get", "pods", "-o", "json", *(["-l", selector] if selector else [])]
    return list(json.loads(kubectl(*argv, env=env))["items"])


def chart_images() -> list[str]:
    """Every image the chart with the development values and the examples run."""
    images = {f"tusk/{p.parent.name}:0.1.0" for p in ROOT.glob("services/*/Dockerfile")}
    images.add("tusk/credit:latest")
    dev = yaml.safe_load((ROOT / "charts" / "tusk" / "values-dev.yaml").read_text())
    defaults = yaml.safe_load((ROOT / "charts" / "tusk" / "values.yaml").read_text())
    for values in (defaults.get("dev", {}), dev.get("dev", {})):
        for backing in values.values():
            if isinstance(backing, dict):
                images.update(
                    backing[k] for k in ("image", "initImage") if isinstance(backing.get(k), str)
                )
    return sorted(images)


# A job whose pods cannot start ends well within this: the runner fails a shard on the first
# ErrImagePull / CreateContainerConfigError it sees, never waiting out kubelet back-offs.
UNPULLABLE_WITHIN = 120.0


def pipeline_spec(
    workdir: Path,
    name: str,
    image: str,
    cmd: list[str],
    *,
    parallelism: int = 1,
    **transform: Any,
) -> Path:
    """A pipeline over ``<name>-in`` (one datum per top-level file), written as YAML."""
    spec: dict[str, Any] = {
        "pipeline": {"name": name},
        "input": {"pfs": {"repo": f"{name}-in", "branch": "master", "glob": "/*"}},
        "transform": {"image": image, "cmd": cmd, **transform.pop("transform_extra", {})},
        "parallelism_spec": {"constant": parallelism},
        **transform,
    }
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def run_to_end(
    env: dict[str, str], workdir: Path, spec: Path, *, within: float, files: int = 1
) -> dict[str, Any]:
    """Create the spec's input repo and pipeline, commit ``files`` files, and return the job
    once it has ended (``tusk job inspect``)."""
    name = yaml.safe_load(spec.read_text())["pipeline"]["name"]
    run(["tusk", "repo", "create", f"{name}-in"], env=env)
    run(["tusk", "pipeline", "create", "-f", str(spec)], env=env)
    data = workdir / f"{name}-data"
    data.mkdir()
    for i in range(files):
        (data / f"{i:03}.txt").write_text(f"{i}\n")
    run(["tusk", "put", f"{name}-in@master:/", "-f", str(data), "-r"], env=env)

    def ended() -> dict[str, Any] | None:
        jobs = tusk_json("job", "list", "-p", name, env=env)
        done = [j for j in jobs if j.get("state") in ("failure", "killed", "success")]
        return done[0] if done else None

    job = wait_until(f"the job of {name} to end", ended, within, every=2)
    return dict(tusk_json("job", "inspect", job["id"], env=env))


def job_pods_prefix(pipeline: str) -> str:
    """The start of every worker pod's name of ``pipeline`` (tusk-<pipeline>-<job>-<shard>-<n>)."""
    return f"tusk-{pipeline}-"


def kubelet_events(env: dict[str, str], pod_prefix: str) -> str:
    """What ``kubectl describe`` shows under Events for the pods named ``pod_prefix…``: the
    pods themselves are deleted once their job ends, their events stay."""
    events = json.loads(kubectl("get", "events", "-o", "json", env=env))["items"]
    return "\n".join(
        f"{e.get('type')} {e.get('reason')} {e['involvedObject']['name']}: {e.get('message')}"
        for e in events
        if e["involvedObject"]["kind"] == "Pod"
        and e["involvedObject"]["name"].startswith(pod_prefix)
    )


def install_release(env: dict[str, str]) -> None:
    """The chart with the development values (``upgrade --install``, ``--wait``)."""
    from tests.deploy.tools import helm

    run(
        [
            str(helm()),
            "upgrade",
            "--install",
            "tusk",
            str(ROOT / "charts" / "tusk"),
            "-n",
            NAMESPACE,
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


@contextlib.contextmanager
def release(env: dict[str, str]) -> Iterator[dict[str, str]]:
    """The release installed, its four APIs forwarded to the ports the CLI defaults to."""
    install_release(env)
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
            lambda: tusk_json("repo", "list", env=env) is not None,
            120,
            every=2,
        )
        yield env
    finally:
        for forward in forwards:
            forward.terminate()
            forward.wait(30)
        kubectl("get", "pods", "-o", "wide", env=env, check=False)


@contextlib.contextmanager
def cluster() -> Iterator[dict[str, str]]:
    """The cluster of e2e/cluster.sh with the chart's images in both nodes. One already up
    (started by hand to iterate on a scenario) is used and left running: whoever started it
    stops it."""
    started_here = not running()
    if started_here:
        run([*CLUSTER, "start"], env=os.environ.copy(), timeout=1800)
    try:
        env = kube_env()
        run([*CLUSTER, "load", *chart_images()], env=os.environ.copy(), timeout=1800)
        yield env
    finally:
        if started_here:
            run([*CLUSTER, "stop"], env=os.environ.copy(), check=False)


def pods_scheduled(env: dict[str, str]) -> dict[str, str]:
    """Pod -> node of every pod the kube-scheduler placed, from the namespace's events."""
    events = json.loads(kubectl("get", "events", "-o", "json", env=env))["items"]
    placed: dict[str, str] = {}
    for event in events:
        found = re.search(r"to (\S+)$", event.get("message", ""))
        if event["involvedObject"]["kind"] == "Pod" and event["reason"] == "Scheduled" and found:
            placed[event["involvedObject"]["name"]] = found.group(1)
    return placed
