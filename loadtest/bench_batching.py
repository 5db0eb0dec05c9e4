"""Datum batching against one process per datum, in the same run.

    .venv/bin/python -m loadtest.bench_batching [--datums 1000] [--load 0.2] [--json OUT]

Starts Kafka (``tests.backing``) and ``tusk up`` (embedded: SQLite, a local object store,
LocalRunner, events through that Kafka) on free ports. Two input repos get the same N small
files (one batch put each); two pipelines, ``parallelism_spec: {constant: 2}``, glob ``/*``,
run the same Python code, which "loads a model" (sleeps ``--load`` seconds, as a model load
blocks) and then writes each datum's file upper-cased to its output:

- *unbatched*: the command is run once per datum, so it loads the model N times;
- *batched*: ``transform.datum_batching: true``, the code wrapped in ``@batch_all_datums``, so
  each of the two worker processes loads it once.

Each figure is datums/s from the commit's finish returning to the job's success. The baseline
is the unbatched pipeline; the ratio is the speed-up. A second baseline runs the same datums
unbatched with no model at all (``--load 0``): the platform's own cost per datum (staging,
upload, results), which batching cannot remove; the closer the batched run comes to it, the
more of the model's cost batching removed. Also printed: the floor of the unbatched run (N
loads, two at a time).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

if __package__ in (None, ""):  # run as `python loadtest/bench_batching.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loadtest.bench_pipelines import Stack, commit_files, job_for, wait_success
from loadtest.report import Figure, Report, environment, print_table, say
from tests.backing.kafka import KAFKA_VERSION, KafkaBroker
from tusk.client import RepoClient
from tusk.client.pipelines import TriggerClient

PARALLELISM = 2
TARGET = 20
"""Issue 15's: 1,000 datums through a model that takes 1 s to load, ≥ 20x faster batched."""

MODEL = """
import os, sys, time
time.sleep(float(os.environ["MODEL_LOAD_SECONDS"]))   # loading the model

def transform():
    root = os.environ["TUSK_PFS_ROOT"]   # /pfs in the sandbox
    name = os.listdir(root + "/in")[0]
    with open(f"{root}/in/{name}") as src, open(f"{root}/out/{name}", "w") as out:
        out.write(src.read().upper())

if os.environ.get("BATCHED"):
    from tusk.worker.nextdatum import batch_all_datums
    batch_all_datums(transform)()
else:
    transform()
"""


def spec(name: str, repo: str, model: Path, load: float, batched: bool) -> str:
    env = {"MODEL_LOAD_SECONDS": str(load)} | ({"BATCHED": "1"} if batched else {})
    return json.dumps(
        {
            "pipeline": {"name": name},
            "input": {"pfs": {"repo": repo, "name": "in", "glob": "/*"}},
            "transform": {"cmd": [sys.executable, str(model)], "env": env,
                          "datum_batching": batched},
            "parallelism_spec": {"constant": PARALLELISM},
        }
    )  # fmt: skip


async def one_run(
    repos: RepoClient, trigger: TriggerClient, model: Path, n: int, load: float, batched: bool
) -> float:
    """Seconds from the input commit's finish to the job's success."""
    kind = ("batched" if batched else "unbatched") + ("" if load else "-no-model")
    say(f"{kind}: {n:,} datums, model load {load} s, parallelism {PARALLELISM}")
    repo, pipeline = f"in-{kind}", f"model-{kind}"
    await repos.create_repo(repo)
    await trigger.create_pipeline(spec(pipeline, repo, model, load, batched))
    files = [(f"/d-{i:05d}.txt", f"datum {i}".encode()) for i in range(n)]
    commit, finished = await commit_files(repos, repo, files)
    job = await job_for(trigger, pipeline, commit, within=120)
    await wait_success(trigger, job.id, within=3600)
    seconds = (time.time_ns() - finished) / 1e9
    out = b"".join([p async for p in repos.get_file(pipeline, "master", "/d-00007.txt")])
    assert out == b"DATUM 7", out  # the outputs are there, and right
    say(f"    {seconds:.1f} s, {n / seconds:.1f} datums/s")
    return seconds


async def run(work: Path, n: int, load: float) -> Report:
    report = Report()
    report.environment = environment(kafka=KAFKA_VERSION)
    model = work / "model.py"
    model.write_text(MODEL)
    kafka = KafkaBroker(num_partitions=3)
    say("starting Kafka and tusk up")
    await asyncio.to_thread(kafka.start)
    stack = Stack(work, kafka.bootstrap)
    try:
        await asyncio.to_thread(stack.start)
        async with (
            RepoClient(stack.url("repo")) as repos,
            TriggerClient(stack.url("trigger")) as trigger,
        ):
            unbatched = await one_run(repos, trigger, model, n, load, batched=False)
            batched = await one_run(repos, trigger, model, n, load, batched=True)
            no_model = await one_run(repos, trigger, model, n, 0.0, batched=False)
    finally:
        await asyncio.to_thread(stack.stop)
        await asyncio.to_thread(kafka.close)
    speedup = unbatched / batched
    report.add(
        Figure(
            f"{n:,} datums, model load {load:g} s, datum_batching",
            n / batched,
            "datums/s",
            f"≥ {TARGET:g}x unbatched",
            speedup >= TARGET,
            "the same code and datums, one process per datum",
            n / unbatched,
            speedup,
        )
    )
    report.add(
        Figure(
            f"{n:,} datums, model load {load:g} s, datum_batching",
            n / batched,
            "datums/s",
            "-",
            None,
            "the same datums, no model at all (each datum's own cost)",
            n / no_model,
            no_model / batched,
        )
    )
    floor = n * load / PARALLELISM
    report.details = {
        "datums": n,
        "model_load_s": load,
        "parallelism": PARALLELISM,
        "unbatched_s": unbatched,
        "batched_s": batched,
        "no_model_s": no_model,
        "speedup": speedup,
        "unbatched_floor_s": floor,
    }
    say(
        f"speed-up {speedup:.1f}x; the unbatched run cannot beat {floor:.0f} s of model loads "
        f"({n:,} x {load:g} s, {PARALLELISM} at a time)"
    )
    report.environment["load_average_after"] = os.getloadavg()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datums", type=int, default=1000, help="datums per pipeline")
    parser.add_argument(
        "--load", type=float, default=0.2, help="seconds the code takes to load its model"
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the results here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tusk-bench-batching-") as work:
        report = asyncio.run(run(Path(work), args.datums, args.load))
    print()
    print_table(report, f"Kafka {report.environment['kafka']}, tusk up (SQLite, local store)")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "figures": [asdict(f) for f in report.figures],
                    "environment": report.environment,
                    "details": report.details,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
