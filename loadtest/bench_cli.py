"""The CLI as a user runs it: its start-up, and `tusk put -r` of many small files.

    .venv/bin/python -m loadtest.bench_cli [--only startup,put] [--runs N] [--files N]
                                           [--rounds N] [--tusk PATH] [--before PATH]

**Start-up.** Runs each command ``--runs`` times as a child process and reads the CPU it used
(user + system, from ``wait4``), which a busy machine inflates far less than wall time; prints the
minimum and the median. The repo service address points at a closed port, so `tusk ls` pays
its imports, settings, client and error path, and no server. Measured in the same run:

- ``python -c pass``: the interpreter alone;
- the floor: importing the libraries `tusk ls` cannot do without (typer to parse its command
  line, httpx and asyncio to ask the service), nothing of tusk;
- the old floor: those and the libraries every command imported until `tusk ls` learnt to
  start without them (rich, pydantic-settings, and with it pydantic).

The target (issue 13) is 0.3 s of CPU for `tusk ls` and `tusk --help`. ``--before`` names
another install's `tusk` (an older checkout's ``.venv/bin/tusk``): its `tusk ls`, `--help` and
`--version` are measured in the same run, each run of it next to one of ``--tusk``.

**put -r** (issue 19): ``--files`` files of 4 KiB in 10 directories, uploaded by `tusk put -r`
(a child process: its wall time, and its CPU from ``wait4``) into a fresh repo, against the
baseline of the same run: the same files, read into memory beforehand, sent by this process
straight to the batch endpoint (``RepoClient.put_files``, batches as the CLI makes them, 4 at
once) into a commit of its own. Interleaved, ``--rounds`` times each, best round reported:

- embedded: `tusk up` (SQLite and a local directory) on a free port;
- services: the repo service as its own uvicorn process on PostgreSQL and versitygw
  (``tests.backing``, as ``loadtest.bench_repo`` starts them).

Targets: ≥ 2,000 files/s end to end in both, client CPU ≤ 0.3 ms per file. ``--tusk`` measures
another install's `tusk` (an older checkout's ``.venv/bin/tusk``, for a before/after); its
`tusk up` and its repo service then run the servers too.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as `python loadtest/bench_cli.py`: make the root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET_SECONDS = 0.3
TARGET_FILES_PER_SECOND = 2000
TARGET_CPU_PER_FILE = 0.3e-3
FILE_SIZE = 4096
# httpx's own command line client is left out as tusk_cli.main.run leaves it out.
FLOOR = "import sys; sys.modules['httpx._main'] = None; import typer.main, httpx, asyncio"
OLD_FLOOR = "import typer, rich.console, rich.table, httpx, pydantic_settings"


def cpu_seconds(argv: list[str], env: dict[str, str]) -> float:
    return timed_child(argv, env)[1]


def timed_child(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall time and CPU (user + system) of a child process; it must succeed."""
    start = time.perf_counter()
    process = subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert process.stderr is not None
    errors = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = 0  # reaped here, not by Popen
    if os.waitstatus_to_exitcode(status) != 0 and argv[1:2] != ["ls"]:
        raise RuntimeError(f"{' '.join(argv)} failed: {errors.decode(errors='replace')}")
    return wall, float(usage.ru_utime + usage.ru_stime)


def measure(name: str, argv: list[str], runs: int, env: dict[str, str]) -> tuple[float, float]:
    cpu_seconds(argv, env)  # once to warm the file cache and write .pyc files
    samples = [cpu_seconds(argv, env) for _ in range(runs)]
    return report(name, samples)


def report(name: str, samples: list[float]) -> tuple[float, float]:
    low, median = min(samples), statistics.median(samples)
    print(f"{name:<38} min {low:6.3f} s   median {median:6.3f} s   CPU", flush=True)
    return low, median


def measure_pair(
    name: str, before: list[str], after: list[str], runs: int, env: dict[str, str]
) -> tuple[float, float]:
    """Both commands, alternately: a load that changes during the run weighs on both alike."""
    cpu_seconds(before, env)
    cpu_seconds(after, env)
    pairs = [(cpu_seconds(before, env), cpu_seconds(after, env)) for _ in range(runs)]
    _, before_median = report(f"{name} (before)", [b for b, _ in pairs])
    _, after_median = report(name, [a for _, a in pairs])
    return before_median, after_median


def startup(args: argparse.Namespace) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
    env["TUSK_REPO_URL"] = "http://127.0.0.1:9"  # closed: connection refused at once
    python = [sys.executable]
    _, base = measure("python -c pass", [*python, "-c", "pass"], args.runs, env)
    _, floor = measure("floor (typer, httpx, asyncio)", [*python, "-c", FLOOR], args.runs, env)
    measure("old floor (+ rich, pydantic-settings)", [*python, "-c", OLD_FLOOR], args.runs, env)
    medians = []
    for name, command in (("tusk ls raw@master", ["ls", "raw@master"]),
                          ("tusk --help", ["--help"]), ("tusk --version", ["--version"])):
        after = [str(args.tusk), *command]
        if args.before:
            _, median = measure_pair(name, [str(args.before), *command], after, args.runs, env)
        else:
            _, median = measure(name, after, args.runs, env)
        medians.append(median)
    median, help_median, version_median = medians
    print(f"tusk ls / floor (median): {median / floor:.2f}x; above the interpreter: "
          f"{median - base:.3f} s; tusk --help {help_median:.3f} s, "
          f"tusk --version {version_median:.3f} s")
    for name, value in (("tusk ls", median), ("tusk --help", help_median)):
        verdict = "met" if value <= TARGET_SECONDS else "missed"
        print(f"target {TARGET_SECONDS} s CPU for {name} (median): {verdict}")


# --- put -r ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Round:
    wall: float
    cpu: float | None  # the client's, for the CLI


def make_tree(root: Path, files: int) -> list[tuple[str, bytes]]:
    contents = []
    for i in range(files):
        relative = f"d{i % 10}/f{i:06d}.bin"
        data = os.urandom(FILE_SIZE)
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)
        contents.append((relative, data))
    return contents


async def direct(url: str, repo: str, contents: list[tuple[str, bytes]]) -> float:
    """The baseline: the files, already in memory, straight to the batch endpoint."""
    from tusk.client import RepoClient, batches
    from tusk.concurrency import bounded

    async with RepoClient(url, timeout=600) as client:
        await client.create_repo(repo)
        start = time.perf_counter()
        commit = await client.start_commit(repo, "master")
        _, batched = batches.split(contents, lambda f: len(f[1]))
        await bounded(
            [
                (lambda batch=batch: client.put_files(repo, commit.id, batch, prefix="/t"))
                for batch in batched
            ],
            4,
        )
        await client.finish_commit(repo, commit.id)
        return time.perf_counter() - start


def through_cli(tusk: Path, url: str, repo: str, tree: Path) -> Round:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
    env["TUSK_REPO_URL"] = url
    subprocess.run([str(tusk), "repo", "create", repo], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall, cpu = timed_child([str(tusk), "put", f"{repo}@master:/t", "-r", "-f", str(tree)], env)
    return Round(wall, cpu)


@asynccontextmanager
async def embedded(tusk: Path, work: Path) -> AsyncIterator[str]:
    from tests.backing.common import free_port, wait_until

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
    env.update(TUSK_REPO_PORT=str(port), TUSK_S3_GATEWAY_PORT="0", TUSK_LOG_LEVEL="WARNING",
               **{f"TUSK_{name}_PORT": str(free_port())
                  for name in ("TRIGGER", "SCHEDULER", "INFERENCE", "CONSOLE")})
    log = (work / "up.log").open("ab")
    process = subprocess.Popen([str(tusk), "up", "--data-dir", str(work / "data")], env=env,
                               stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        def ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"tusk up exited; see {work / 'up.log'}")
            try:
                return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, 300, "tusk up to be ready")
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@asynccontextmanager
async def services(tusk: Path, work: Path) -> AsyncIterator[str]:
    from loadtest.bench_repo import running_stack

    async with running_stack(work, python=str(tusk.with_name("python"))) as stack:
        yield stack.base_url


async def put_part(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-cli-"))
    try:
        tree = work / "tree"
        contents = [(f"/{name}", data) for name, data in make_tree(tree, args.files)]
        for mode, stack in (("embedded", embedded), ("services", services)):
            (work / mode).mkdir()
            async with stack(args.tusk, work / mode) as url:
                base: list[float] = []
                cli: list[Round] = []
                for n in range(args.rounds):
                    base.append(await direct(url, f"direct{n}", contents))
                    cli.append(through_cli(args.tusk, url, f"cli{n}", tree))
                    print(f"{mode} round {n + 1}: direct {args.files / base[-1]:7.0f} files/s, "
                          f"tusk put -r {args.files / cli[-1].wall:7.0f} files/s "
                          f"(client CPU {cli[-1].cpu:.2f} s)", flush=True)
                best_base = min(base)
                best = min(cli, key=lambda r: r.wall)
                per_file = min(r.cpu or 0.0 for r in cli) / args.files
                rate = args.files / best.wall
                print(f"{mode}: tusk put -r {rate:.0f} files/s, batch endpoint directly "
                      f"{args.files / best_base:.0f} files/s, ratio {best_base / best.wall:.2f}; "
                      f"client CPU {per_file * 1e3:.3f} ms per file (start-up included)")
                print(f"  target {TARGET_FILES_PER_SECOND} files/s: "
                      f"{'met' if rate >= TARGET_FILES_PER_SECOND else 'missed'}; "
                      f"target {TARGET_CPU_PER_FILE * 1e3} ms CPU per file: "
                      f"{'met' if per_file <= TARGET_CPU_PER_FILE else 'missed'}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="startup,put", help="startup, put or both")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tusk", type=Path, default=Path(sys.executable).with_name("tusk"))
    parser.add_argument("--before", type=Path, help="another tusk to compare start-up with")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}", flush=True)
    if "startup" in parts:
        startup(args)
    if "put" in parts:
        asyncio.run(put_part(args))
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
