"""Pipelines as pods on the real two-node cluster of e2e/cluster.sh (issue 12), each figure
against a baseline measured in the same run.

    make bench-pods                      # engine, images, cluster, chart, then this (root)
    .venv/bin/python -m loadtest.bench_pods [--runs N] [--datums N] [--json OUT]
                                         # with the engine already up (e2e/engine.sh start)

1. commit finish -> first datum's command running in a pod (warm node, image present): a
   one-datum pipeline on ``tusk/worker`` whose command writes ``date +%s.%N`` to its output;
   the commit's ``finished_at`` (repo service) to that stamp. Baseline: ``kubectl run`` of the
   same image with the same command, from the call to the stamp in its log. p50 of ``--runs``.
   Measured as a user meets it: a pipeline that has run a job before, so its warm worker pod
   is up and waiting (each run starts once it says so in its log); and cold, the same with
   ``autoscaling: true`` (a pod made for each job).
2. ``--datums`` datums (default 100), ``parallelism_spec: {constant: 4}``, pods spread over
   both nodes: datums/s from the commit's ``finished_at`` to the job's ``finished_at``.
   Baseline: the same pipeline and data on the LocalRunner (``tusk up`` on this host).

All clocks are this host's (the pods share its kernel clock). A cluster already up is used
and left up; one started here is stopped at the end.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml

from e2e import kube
from e2e.common import host_env, run, tusk_json, wait_until
from loadtest.report import say

IMAGE = "tusk/worker:0.1.0"
STAMP_CMD = ["sh", "-c", "date +%s.%N > /pfs/out/started"]
# The same, plus when the container's first process (the worker: PID 1 of the container's PID
# namespace) was started, in clock ticks since boot, with the tick rate and the boot time: the
# worker's own start-up (imports, its spec, staging) is the stamp minus that.
BREAKDOWN_CMD = [
    "sh",
    "-c",
    "date +%s.%N > /pfs/out/started; "
    "echo $(cut -d' ' -f22 /proc/1/stat) $(getconf CLK_TCK) "
    "$(awk '/^btime/ {print $2}' /proc/stat) > /pfs/out/proc1",
]
# Where the time from commit finish to the first datum's command goes, in order: on a warm
# pod (made and started before the commit), and on a pod made for the job.
WARM_STAGES = (
    "commit finished -> job created",
    "job created -> datum command running (warm pod)",
)
STAGES = (
    "commit finished -> job created",
    "job created -> pod created",
    "pod created -> pod scheduled",
    "pod scheduled -> worker process started",
    "worker process started -> datum command running",
)


class PodWatcher:
    """``kubectl get pods --watch`` in the background: when this host first saw each worker
    pod exist and bound to a node (the API's own timestamps are whole seconds)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.created: dict[str, float] = {}
        self.scheduled: dict[str, float] = {}
        template = '{.metadata.name} {.spec.nodeName}{"\\n"}'
        self.proc = subprocess.Popen(
            [
                "kubectl",
                "-n",
                kube.NAMESPACE,
                "get",
                "pods",
                "--watch",
                "-l",
                "app.kubernetes.io/component=worker",
                "-o",
                f"jsonpath={template}",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            seen = time.time()
            fields = line.split()
            if not fields:
                continue
            self.created.setdefault(fields[0], seen)
            if len(fields) > 1:
                self.scheduled.setdefault(fields[0], seen)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def stamp(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def pipeline(
    workdir: Path, name: str, cmd: list[str], glob: str, parallelism: int, **extra: Any
) -> Path:
    spec = {
        "pipeline": {"name": name},
        "input": {"pfs": {"repo": f"{name}-in", "branch": "master", "glob": glob}},
        "transform": {"image": IMAGE, "cmd": cmd},
        "parallelism_spec": {"constant": parallelism},
        **extra,
    }
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def put_and_wait(env: dict[str, str], name: str, files: Path) -> tuple[dict[str, Any], float]:
    """Commit ``files`` to ``<name>-in`` and wait for the job; (the job, commit finished_at)."""
    run(["tusk", "put", f"{name}-in@master:/", "-f", str(files), "-r"], env=env)
    commit = tusk_json("commit", "inspect", f"{name}-in@master", env=env)
    run(["tusk", "job", "wait", "-p", name, "-g", commit["id"]], env=env, timeout=1800)
    job = tusk_json("job", "list", "-p", name, env=env)[0]  # the newest
    return job, stamp(commit["finished_at"])


def warm_pod_waiting(env: dict[str, str], pipeline: str) -> bool:
    """Whether the pipeline has a warm pod whose worker says it waits for its shard."""
    for pod in kube.pods(env, f"tusk.io/warm-for={pipeline}"):
        if pod["status"].get("phase") != "Running" or pod["metadata"].get("deletionTimestamp"):
            continue
        logs = kube.kubectl("logs", pod["metadata"]["name"], env=env, check=False)
        if "waiting for an assignment" in logs:
            return True
    return False


def first_datum(
    env: dict[str, str], workdir: Path, runs: int, *, warm: bool
) -> tuple[list[float], dict[str, list[float]]]:
    """p50 input: commit finish -> the first datum's command running, per run; and the same
    broken down into :data:`WARM_STAGES` or :data:`STAGES`."""
    name = "bench-warm" if warm else "bench-cold"
    spec = pipeline(workdir, name, BREAKDOWN_CMD, "/", 1, autoscaling=not warm)
    run(["tusk", "repo", "create", f"{name}-in"], env=env)
    run(["tusk", "pipeline", "create", "-f", str(spec)], env=env)
    latencies = []
    stages: dict[str, list[float]] = {stage: [] for stage in (WARM_STAGES if warm else STAGES)}
    watcher = PodWatcher(env)
    used: set[str] = set()  # pods of earlier runs, which the watcher saw too
    try:
        for i in range(runs + 1):
            if warm and i > 0:
                wait_until(
                    f"a warm pod of {name} waiting",
                    lambda: warm_pod_waiting(env, name),
                    300,
                    every=0.5,
                )
            data = workdir / f"{name}-{i}"
            data.mkdir()
            (data / f"{i}.txt").write_text(f"{i}\n")
            job, finished = put_and_wait(env, name, data)
            assert job["state"] == "success", job
            started = float(
                run(["tusk", "get", f"{name}@master:/started"], env=env).stdout.split()[-1]
            )
            ticks, hertz, boot = run(
                ["tusk", "get", f"{name}@master:/proc1"], env=env
            ).stdout.split()[-3:]
            process = int(boot) + int(ticks) / int(hertz)
            if not warm:  # the pod made for this run (the watcher sees earlier ones too)
                pod = next(
                    p
                    for p in list(watcher.created)
                    if p.startswith(kube.job_pods_prefix(name)) and p not in used
                )
                used.add(pod)
            if i == 0:  # the first run warms the node (image unpacked, scheduler connected)
                continue
            latencies.append(started - finished)
            if warm:
                created = stamp(job["created_at"])
                points = [finished, created, started]
                for stage, (a, b) in zip(WARM_STAGES, itertools.pairwise(points), strict=True):
                    stages[stage].append(b - a)
                continue
            points = [
                finished,
                stamp(job["created_at"]),
                watcher.created[pod],
                watcher.scheduled.get(pod, watcher.created[pod]),
                process,
                started,
            ]
            for stage, (a, b) in zip(STAGES, itertools.pairwise(points), strict=True):
                stages[stage].append(b - a)
    finally:
        watcher.close()
    return latencies, stages


def kubectl_run(env: dict[str, str], runs: int) -> list[float]:
    latencies = []
    for i in range(runs + 1):
        pod = f"bench-baseline-{os.getpid()}-{i}"
        t0 = time.time()
        kube.kubectl(
            "run",
            pod,
            f"--image={IMAGE}",
            "--restart=Never",
            "--image-pull-policy=IfNotPresent",
            "--command",
            "--",
            *STAMP_CMD[:2],
            "date +%s.%N",
            env=env,
        )

        def succeeded(pod: str = pod) -> bool:
            phase = kube.kubectl("get", "pod", pod, "-o", "jsonpath={.status.phase}", env=env)
            return phase == "Succeeded"

        wait_until(f"pod {pod} to succeed", succeeded, 300, every=0.2)
        started = float(kube.kubectl("logs", pod, env=env).split()[-1])
        kube.kubectl("delete", "pod", pod, "--wait=false", env=env)
        if i > 0:
            latencies.append(started - t0)
    return latencies


def many_datums(env: dict[str, str], workdir: Path, datums: int, tag: str) -> float:
    name = f"bench-many-{tag}"
    cmd = ["sh", "-c", f"cp /pfs/{name}-in/* /pfs/out/"]
    run(["tusk", "repo", "create", f"{name}-in"], env=env)
    run(["tusk", "pipeline", "create", "-f", str(pipeline(workdir, name, cmd, "/*", 4))], env=env)
    data = workdir / f"many-{tag}"
    data.mkdir()
    for i in range(datums):
        (data / f"{i:04}.txt").write_text(f"{i}\n")
    job, finished = put_and_wait(env, name, data)
    assert job["state"] == "success", job
    assert job["counts"]["processed"] == datums, job
    return datums / (stamp(job["finished_at"]) - finished)


def local_datums(workdir: Path, datums: int) -> float:
    """The same job on the LocalRunner: ``tusk up`` on this host, on ports of its own."""
    base = int(os.environ.get("TUSK_BENCH_PORT_BASE", "18940"))
    ports = {n: base + i for i, n in enumerate(("repo", "trigger", "scheduler", "inference"))}
    env = host_env(
        TUSK_DATA_DIR=str(workdir / "local"),
        TUSK_REPO_PORT=str(ports["repo"]),
        TUSK_TRIGGER_PORT=str(ports["trigger"]),
        TUSK_SCHEDULER_PORT=str(ports["scheduler"]),
        TUSK_INFERENCE_PORT=str(ports["inference"]),
        TUSK_CONSOLE_PORT=str(base + 4),
        TUSK_S3_GATEWAY_PORT="0",
        TUSK_REPO_URL=f"http://127.0.0.1:{ports['repo']}",
        TUSK_TRIGGER_URL=f"http://127.0.0.1:{ports['trigger']}",
        TUSK_SCHEDULER_URL=f"http://127.0.0.1:{ports['scheduler']}",
        TUSK_INFERENCE_URL=f"http://127.0.0.1:{ports['inference']}",
        TUSK_LOG_LEVEL="WARNING",
    )
    log = (workdir / "tusk-up.log").open("w")
    up = subprocess.Popen(["tusk", "up"], env=env, cwd=workdir, stdout=log, stderr=log)
    try:
        wait_until("tusk up", lambda: tusk_json("repo", "list", env=env) is not None, 300, 1)
        return many_datums(env, workdir, datums, "local")
    finally:
        up.terminate()
        up.wait(60)
        log.close()


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=7, help="runs of the latency figure")
    parser.add_argument("--datums", type=int, default=100)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    figures: dict[str, Any] = {"load_before": load_average()}
    with (
        tempfile.TemporaryDirectory() as tmp,
        kube.cluster() as cluster,
        kube.release(cluster) as env,
    ):
        work = Path(tmp)
        say("commit finish -> first datum's command in a warm pod")
        pod, stages = first_datum(env, work, args.runs, warm=True)
        say("commit finish -> first datum's command in a pod made for the job (autoscaling)")
        cold, cold_stages = first_datum(env, work, args.runs, warm=False)
        say("kubectl run of the same image and command (baseline)")
        base = kubectl_run(env, args.runs)
        say(f"{args.datums} datums, parallelism 4, two nodes")
        kube_rate = many_datums(env, work, args.datums, "kube")
        placed = {  # the runner deletes each pod once its shard is recorded; events stay
            node
            for pod, node in kube.pods_scheduled(env).items()
            if pod.startswith("tusk-bench-many-kube-")
        }
        say(f"{args.datums} datums, parallelism 4, LocalRunner (baseline)")
        local_rate = local_datums(work, args.datums)
    figures.update(
        first_datum_p50_s=statistics.median(pod),
        first_datum_runs_s=pod,
        kubectl_run_p50_s=statistics.median(base),
        kubectl_run_runs_s=base,
        first_datum_ratio=statistics.median(pod) / statistics.median(base),
        first_datum_cold_p50_s=statistics.median(cold),
        first_datum_cold_runs_s=cold,
        first_datum_cold_ratio=statistics.median(cold) / statistics.median(base),
        kube_datums_per_s=kube_rate,
        local_datums_per_s=local_rate,
        kube_vs_local=kube_rate / local_rate,
        first_datum_stages_p50_s={k: statistics.median(v) for k, v in stages.items()},
        first_datum_cold_stages_p50_s={k: statistics.median(v) for k, v in cold_stages.items()},
        worker_nodes_seen=sorted(placed),
        load_after=load_average(),
    )
    print(json.dumps(figures, indent=2))
    print(
        f"\ncommit -> first datum in a warm pod  p50 {figures['first_datum_p50_s']:.2f} s"
        f"   kubectl run p50 {figures['kubectl_run_p50_s']:.2f} s"
        f"   ratio {figures['first_datum_ratio']:.2f}\n"
        f"commit -> first datum in a new pod   p50 {figures['first_datum_cold_p50_s']:.2f} s"
        f"   ratio {figures['first_datum_cold_ratio']:.2f}\n"
        f"{args.datums} datums, parallelism 4: pods {kube_rate:.2f} datums/s"
        f"   LocalRunner {local_rate:.2f} datums/s   ratio {figures['kube_vs_local']:.2f}\n"
        f"load average {figures['load_before']} -> {figures['load_after']}"
    )
    for which, key in (
        ("warm pod", "first_datum_stages_p50_s"),
        ("new pod", "first_datum_cold_stages_p50_s"),
    ):
        print(f"\ncommit -> first datum in a {which}, by stage (p50 of each):")
        for stage, seconds in figures[key].items():
            print(f"  {stage:<50} {seconds:6.2f} s")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
