"""The pipelines' speed targets (issue 4), each against a baseline measured in the same run.

    .venv/bin/python -m loadtest.bench_pipelines [--quick] [--json OUT]

Starts Kafka (``tests.backing``) and ``tusk up`` (embedded: SQLite and a local object store,
LocalRunner, events through that Kafka) on free ports, and measures:

1. latency: from a commit's finish returning to the command of the first datum of the job it
   triggers starting (the command appends ``date +%s%N`` to a file). Warm: the pipeline has run
   before; one new file per commit, glob ``/*``. Broken down with the job's ``created_at``
   (trigger), ``started_at`` (scheduler: planned, running), its shard's ``started_at`` (the
   runner handed the shard to a worker) and the command. Baselines: spawning ``python -c pass``
   and ``tusk-worker --help`` (what a worker started cold would cost).
2. skipping: the scheduler's planning (``make_plan`` → ``plan_datums``) over N processed
   datums, per datum, baseline a bare set-membership loop; and a job over N unchanged datums
   plus one new one: finish returning → the new datum's command starting.
3. throughput: 1,000 tiny datums (one batch put), ``parallelism_spec: {constant: 2}``, cmd
   ``true``: from the finish returning to the job's success. Baseline: 1,000 ``true`` spawned
   two at a time, and the worker's start-up.

Every time is wall clock (``time.time_ns``) on one machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python loadtest/bench_pipelines.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from loadtest.report import Figure, Report, environment, percentile, print_table, say
from tests.backing.common import LOOPBACK, ManagedProcess, free_port, port_open, wait_until
from tests.backing.kafka import KAFKA_VERSION, KafkaBroker
from tests.backing.postgres import PostgresServer
from tusk.client import RepoClient
from tusk.client.pipelines import TriggerClient
from tusk.pipelines import Datum, DatumInput, PipelineSpec, plan_datums
from tusk_scheduler.domain.planning import make_plan

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def read_stamps(path: Path) -> list[int]:
    if not path.exists():
        return []
    return [int(line.split()[0]) for line in path.read_text().splitlines() if line.strip()]


async def wait_lines(path: Path, count: int, within: float = 120) -> list[int]:
    deadline = time.monotonic() + within
    while True:
        stamps = read_stamps(path)
        if len(stamps) >= count:
            return stamps
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path.name}: {len(stamps)} of {count} lines after {within} s")
        await asyncio.sleep(0.002)


# --- the stack ---------------------------------------------------------------------------------


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz").is_success
    except httpx.HTTPError:  # a server busy starting (a loaded machine) is not ready yet
        return False


class Stack:
    """``tusk up``: every service in one process (SQLite, a local object store)."""

    def __init__(self, work: Path, bootstrap: str) -> None:
        self.work = work
        self.ports = {
            name: free_port() for name in ("repo", "trigger", "scheduler", "inference", "console")
        }
        env = {
            "TUSK_KAFKA_BOOTSTRAP": bootstrap,
            "TUSK_REPO_PORT": str(self.ports["repo"]),
            "TUSK_TRIGGER_PORT": str(self.ports["trigger"]),
            "TUSK_SCHEDULER_PORT": str(self.ports["scheduler"]),
            "TUSK_INFERENCE_PORT": str(self.ports["inference"]),
            "TUSK_CONSOLE_PORT": str(self.ports["console"]),
            "TUSK_S3_GATEWAY_PORT": str(free_port()),
            "TUSK_LOG_LEVEL": "WARNING",
            # The measured commands append to a stamps file outside /pfs/out, which the
            # worker's sandbox (bubblewrap, where installed) would hide from them.
            "TUSK_WORKER_SANDBOX": "off",
        }
        self.process = ManagedProcess(
            "tusk-up", [str(BIN / "tusk"), "up", "--data-dir", str(work / "data")], work, env=env
        )

    def url(self, name: str) -> str:
        return f"http://{LOOPBACK}:{self.ports[name]}"

    def start(self) -> None:
        self.process.start()
        for name in ("repo", "trigger", "scheduler"):
            port = self.ports[name]
            wait_until(
                lambda port=port, name=name: port_open(LOOPBACK, port) and _ready(self.url(name)),
                90,
                f"tusk up ({name})",
                self.process,
            )

    def stop(self) -> None:
        self.process.stop()


class ServicesStack(Stack):
    """repo, trigger and scheduler as separate processes (``uvicorn``, as their images run
    them) on PostgreSQL, as deployed; objects in a local directory."""

    def __init__(self, work: Path, bootstrap: str, database_url: str) -> None:
        self.work = work
        self.ports = {name: free_port() for name in ("repo", "trigger", "scheduler")}
        self.env = {
            "TUSK_KAFKA_BOOTSTRAP": bootstrap,
            "TUSK_DATABASE_URL": database_url,
            "TUSK_OBJECT_STORE_URL": f"file://{work / 'objects'}",
            "TUSK_DATA_DIR": str(work / "data"),
            "TUSK_REPO_URL": self.url("repo"),
            "TUSK_TRIGGER_URL": self.url("trigger"),
            "TUSK_MIGRATE_ON_START": "false",
            "TUSK_LOG_LEVEL": "WARNING",
            # The measured commands append to a stamps file outside /pfs/out, which the
            # worker's sandbox (bubblewrap, where installed) would hide from them.
            "TUSK_WORKER_SANDBOX": "off",
        }
        self.processes = [
            ManagedProcess(
                name,
                [
                    str(BIN / "uvicorn"),
                    "--factory",
                    f"tusk_{name}.app:create_app",
                    "--host",
                    LOOPBACK,
                    "--port",
                    str(self.ports[name]),
                    "--no-access-log",
                ],
                work,
                env=self.env,
            )
            for name in ("repo", "trigger", "scheduler")
        ]

    def start(self) -> None:
        subprocess.run([str(BIN / "tusk"), "migrate"], env={**os.environ, **self.env}, check=True)
        for process in self.processes:
            process.start()
        for process in self.processes:
            port = self.ports[process.name]
            wait_until(
                lambda port=port, name=process.name: (
                    port_open(LOOPBACK, port) and _ready(self.url(name))
                ),
                90,
                process.name,
                process,
            )

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


def pipeline_yaml(name: str, repo: str, cmd: list[str], parallelism: int = 1) -> str:
    return json.dumps(
        {
            "pipeline": {"name": name},
            "input": {"pfs": {"repo": repo, "glob": "/*"}},
            "transform": {"cmd": cmd},
            "parallelism_spec": {"constant": parallelism},
        }
    )


def shard_started_ns(stack: Stack, job: str) -> float:
    """When the runner handed the job's first shard to a worker (the scheduler's record)."""
    info = httpx.get(f"{stack.url('scheduler')}/v1/jobs/{job}").raise_for_status().json()
    started = min(s["started_at"] for s in info["shards"] if s["started_at"])
    return datetime.fromisoformat(started).timestamp() * 1e9


def stamp_cmd(path: Path) -> list[str]:
    """Appends ``<time_ns> <datum's files>`` to ``path``."""
    return ["/bin/sh", "-c", f'echo "$(date +%s%N) $(ls "$TUSK_PFS_ROOT/in")" >> {path}']


async def job_for(trigger: TriggerClient, pipeline: str, commit: str, within: float = 60) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        async for job in trigger.list_jobs(pipeline=pipeline, limit=5):
            if any(i.commit == commit for i in job.inputs):
                return job
        await asyncio.sleep(0.02)
    raise RuntimeError(f"no job of {pipeline} for commit {commit}")


async def wait_success(trigger: TriggerClient, job_id: str, within: float = 900) -> Any:
    deadline = time.monotonic() + within
    while True:
        job = await trigger.wait_job(job_id, seconds=min(30.0, within))
        if job.ended:
            if job.state != "success":
                raise RuntimeError(f"job {job_id} ended {job.state}: {job.reason}")
            return job
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job_id} still {job.state} after {within} s")


async def commit_files(
    repos: RepoClient, repo: str, files: list[tuple[str, bytes]]
) -> tuple[str, int]:
    """Opens a commit, puts ``files`` in one batch, finishes it: (commit id, finish returned)."""
    commit = (await repos.start_commit(repo, "master")).id
    await repos.put_files(repo, commit, files)
    await repos.finish_commit(repo, commit)
    return commit, time.time_ns()


def ms(ns: float) -> float:
    return ns / 1e6


# --- baselines -------------------------------------------------------------------------------


def spawn_ms(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def spawn_many_true(count: int, parallel: int) -> float:
    """Seconds to run ``count`` ``true`` processes, ``parallel`` at a time."""
    queue = list(range(count))

    async def lane() -> None:
        while queue:
            queue.pop()
            process = await asyncio.create_subprocess_exec("true")
            await process.wait()

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(parallel)))
    return time.perf_counter() - started


# --- 1. latency --------------------------------------------------------------------------------


async def bench_latency(
    report: Report, stack: Stack, repos: RepoClient, trigger: TriggerClient, runs: int
) -> None:
    say(f"latency: {runs} commits of one new file each, after a warm-up")
    stamps = stack.work / "latency.stamps"
    await repos.create_repo("lat")
    await commit_files(repos, "lat", [("warm-0", b"x")])
    await trigger.create_pipeline(pipeline_yaml("latp", "lat", stamp_cmd(stamps)))
    seen = len(await wait_lines(stamps, 1))
    rows: list[dict[str, float]] = []
    for i in range(runs + 2):  # the first two are warm-up
        await asyncio.sleep(0.2)
        commit, finished = await commit_files(repos, "lat", [(f"f-{i:04d}", b"x")])
        cmd_at = (await wait_lines(stamps, seen + 1))[seen]
        seen += 1
        job = await job_for(trigger, "latp", commit)
        job = await wait_success(trigger, job.id, 60)
        handed_at = shard_started_ns(stack, job.id)
        if i < 2:
            continue
        created = job.created_at.timestamp() * 1e9
        started = job.started_at.timestamp() * 1e9
        rows.append(
            {
                "total": ms(cmd_at - finished),
                "finish -> job created (trigger)": ms(created - finished),
                "job created -> running (scheduler plans)": ms(started - created),
                "running -> shard handed to a worker (runner start)": ms(handed_at - started),
                "handed over -> cmd (shard spec, staging)": ms(cmd_at - handed_at),
            }
        )
    python = spawn_ms([sys.executable, "-c", "pass"], 10)
    worker = spawn_ms([str(BIN / "tusk-worker"), "--help"], 10)
    p50 = statistics.median(r["total"] for r in rows)
    report.add(
        Figure(
            "commit.finished -> first datum's cmd starts, p50",
            p50,
            "ms",
            "<= 100 ms",
            p50 <= 100,
            "spawn `tusk-worker --help`",
            worker,
            p50 / worker,
        )
    )
    report.add(
        Figure(
            "... p90",
            percentile([r["total"] for r in rows], 90),
            "ms",
            "",
            None,
            "spawn `python -c pass`",
            python,
            None,
        )
    )
    breakdown = {k: statistics.median(r[k] for r in rows) for k in rows[0] if k != "total"}
    for name, value in breakdown.items():
        say(f"    {name}: p50 {value:.1f} ms")
    report.details["latency"] = {
        "runs": rows,
        "breakdown_p50_ms": breakdown,
        "python_c_pass_ms": python,
        "tusk_worker_help_ms": worker,
    }


# --- 2. skipping -------------------------------------------------------------------------------


def synthetic_datums(n: int) -> list[Datum]:
    return [
        Datum.of(
            [DatumInput("in", "in", "master", "c" * 32, f"/f-{i:06d}", "file", f"{i:064x}", 10)]
        )
        for i in range(n)
    ]


def bench_planning(report: Report, n: int) -> None:
    say(f"planning over {n:,} processed datums")
    spec = PipelineSpec.model_validate(json.loads(pipeline_yaml("p", "in", ["true"], 2)))
    datums = synthetic_datums(n)
    processed = {
        d.id: [{"path": f"/out{d.inputs[0].path}", "hash": "h" * 64, "size": 1}] for d in datums
    }
    current = [*datums, *synthetic_datums(n + 1)[n:]]  # N unchanged plus one new

    def best(action: Any, rounds: int = 7) -> float:
        times = []
        for _ in range(rounds):
            started = time.perf_counter_ns()
            action()
            times.append(time.perf_counter_ns() - started)
        return min(times) / 1000 / len(current)  # µs per datum

    plan_us = best(lambda: plan_datums(current, processed.keys()))
    make_us = best(lambda: make_plan(spec, current, processed))
    ids = [d.id for d in current]
    base_us = best(lambda: [i in processed for i in ids])
    hash_us = best(lambda: synthetic_datums(len(current)), 3)
    report.add(
        Figure(
            f"skip a processed datum: make_plan over {n:,}, per datum",
            make_us,
            "µs",
            "<= 50 µs",
            make_us <= 50,
            "bare `id in dict` loop",
            base_us,
            make_us / base_us,
        )
    )
    report.details["planning_us_per_datum"] = {
        "plan_datums": plan_us,
        "make_plan": make_us,
        "set_membership": base_us,
        "Datum.of (id hashing, as compute_datums does)": hash_us,
    }
    say(f"    plan_datums {plan_us:.3f} µs, Datum.of {hash_us:.2f} µs per datum")


async def bench_skip_job(
    report: Report, stack: Stack, repos: RepoClient, trigger: TriggerClient, n: int
) -> None:
    say(f"a job over {n:,} unchanged datums plus one new one")
    stamps = stack.work / "skip.stamps"
    await repos.create_repo("skip")
    await commit_files(repos, "skip", [(f"f-{i:06d}", str(i).encode()) for i in range(n)])
    await trigger.create_pipeline(pipeline_yaml("skipp", "skip", stamp_cmd(stamps), 4))
    started = time.monotonic()
    await wait_lines(stamps, n, within=3600)
    jobs = [j async for j in trigger.list_jobs(pipeline="skipp", limit=1)]
    await wait_success(trigger, jobs[0].id, 600)
    first_seconds = time.monotonic() - started
    say(f"    the first job ({n:,} datums, 4 shards) took {first_seconds:.1f} s")
    await asyncio.sleep(0.5)
    commit, finished = await commit_files(repos, "skip", [("new", b"new")])
    cmd_at = (await wait_lines(stamps, n + 1, within=600))[n]
    job = await wait_success(trigger, (await job_for(trigger, "skipp", commit)).id, 600)
    handed_at = shard_started_ns(stack, job.id)
    total = ms(cmd_at - finished)
    created, running = job.created_at.timestamp() * 1e9, job.started_at.timestamp() * 1e9
    breakdown = {
        "finish -> job created (trigger)": ms(created - finished),
        "job created -> running (datums computed, skips planned)": ms(running - created),
        "running -> shard handed to a worker": ms(handed_at - running),
        "handed over -> cmd": ms(cmd_at - handed_at),
    }
    for name, value in breakdown.items():
        say(f"    {name}: {value:.1f} ms")
    lat = report.details.get("latency", {}).get("runs", [])
    base = statistics.median(r["total"] for r in lat) if lat else None
    report.add(
        Figure(
            f"{n:,} unchanged + 1 new: finish -> new datum's cmd",
            total / 1000,
            "s",
            "<= 1 s",
            total <= 1000,
            "the same with 1 datum (figure 1, p50)",
            base / 1000 if base else None,
            total / base if base else None,
        )
    )
    report.details["skip_job"] = {
        "datums": n,
        "first_job_seconds": first_seconds,
        "total_ms": total,
        "breakdown_ms": breakdown,
        "counts": job.counts.model_dump(),
    }


# --- 3. throughput -----------------------------------------------------------------------------


async def bench_throughput(
    report: Report, repos: RepoClient, trigger: TriggerClient, n: int
) -> None:
    say(f"throughput: {n:,} tiny datums, parallelism 2, cmd `true`")
    await repos.create_repo("tput")
    await trigger.create_pipeline(pipeline_yaml("tputp", "tput", ["true"], 2))
    commit, finished = await commit_files(
        repos, "tput", [(f"d-{i:05d}", str(i).encode()) for i in range(n)]
    )
    job = await wait_success(trigger, (await job_for(trigger, "tputp", commit)).id, 3600)
    done = time.time_ns()
    seconds = (done - finished) / 1e9
    rate = n / seconds
    base_seconds = await spawn_many_true(n, 2)
    report.add(
        Figure(
            f"{n:,} tiny datums, parallelism 2, end to end",
            rate,
            "datums/s",
            ">= 50 datums/s",
            rate >= 50,
            "spawning `true` 2 at a time",
            n / base_seconds,
            rate / (n / base_seconds),
        )
    )
    running = job.finished_at.timestamp() - job.started_at.timestamp()
    report.details["throughput"] = {
        "datums": n,
        "seconds": seconds,
        "created_to_running_s": job.started_at.timestamp() - job.created_at.timestamp(),
        "running_to_finished_s": running,
        "finish_to_created_s": job.created_at.timestamp() - finished / 1e9,
    }
    say(f"    {seconds:.1f} s; running -> finished {running:.1f} s")


# --- running it --------------------------------------------------------------------------------


async def run(work: Path, quick: bool, services: bool) -> Report:
    report = Report()
    report.environment = environment(kafka=KAFKA_VERSION)
    report.environment["stack"] = "services" if services else "tusk up"
    bench_planning(report, 10_000)
    kafka = KafkaBroker(num_partitions=3)
    postgres = PostgresServer() if services else None
    say("starting Kafka" + (", PostgreSQL and the services" if services else " and tusk up"))
    await asyncio.to_thread(kafka.start)
    stack: Stack
    if postgres is not None:
        await asyncio.to_thread(postgres.start)
        stack = ServicesStack(work, kafka.bootstrap, postgres.url)
    else:
        stack = Stack(work, kafka.bootstrap)
    try:
        await asyncio.to_thread(stack.start)
        async with (
            RepoClient(stack.url("repo")) as repos,
            TriggerClient(stack.url("trigger")) as trigger,
        ):
            await bench_latency(report, stack, repos, trigger, 10 if quick else 30)
            await bench_throughput(report, repos, trigger, 200 if quick else 1000)
            await bench_skip_job(report, stack, repos, trigger, 1000 if quick else 10_000)
    finally:
        await asyncio.to_thread(stack.stop)
        await asyncio.to_thread(kafka.close)
        if postgres is not None:
            await asyncio.to_thread(postgres.stop)
    report.environment["load_average_after"] = os.getloadavg()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer runs: 10 latency commits, 200 datums, 1,000 for skipping",
    )
    parser.add_argument(
        "--stack",
        choices=["embedded", "services"],
        default="embedded",
        help="embedded: `tusk up` (one process, SQLite); services: repo, trigger and scheduler "
        "as separate processes on PostgreSQL, as deployed",
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the results here")
    args = parser.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tusk-bench-pipelines-") as work:
        report = asyncio.run(run(Path(work), args.quick, args.stack == "services"))
    report.details["total_seconds"] = time.monotonic() - started
    print()
    print_table(
        report,
        f"Kafka {report.environment['kafka']} (one KRaft node), "
        + (
            "repo, trigger and scheduler processes (PostgreSQL, local object store)"
            if args.stack == "services"
            else "tusk up (SQLite, local object store)"
        ),
        decimals=3,
    )
    say(f"done in {report.details['total_seconds']:.0f} s")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "environment": report.environment,
                    "figures": [asdict(f) for f in report.figures],
                    "details": report.details,
                },
                indent=2,
                default=str,
            )
        )
    return 0 if all(f.met is not False for f in report.figures) else 1


if __name__ == "__main__":
    sys.exit(main())
