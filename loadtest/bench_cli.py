"""CLI start-up: the CPU a `tusk ls` costs before it does anything, against a floor.

    .venv/bin/python -m loadtest.bench_cli [--runs N] [--tusk PATH]

Runs each command ``--runs`` times as a child process and reads the CPU it used (user +
system, from ``wait4``), which a busy machine inflates far less than wall time; prints the
minimum and the median. The repo service address points at a closed port, so `tusk ls` pays
its imports, settings, client and error path, and no server. Measured in the same run:

- ``python -c pass``: the interpreter alone;
- the floor: importing the libraries any CLI command needs (typer, rich, httpx,
  pydantic-settings), nothing of tusk.

The target (issue 13) is 0.3 s of CPU for `tusk ls`. ``--tusk`` measures another install's
`tusk` (an older checkout's, for a before/after).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

TARGET_SECONDS = 0.3
FLOOR = "import typer, rich.console, rich.table, httpx, pydantic_settings"


def cpu_seconds(argv: list[str], env: dict[str, str]) -> float:
    process = subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, _, usage = os.wait4(process.pid, 0)
    process.returncode = 0  # reaped here, not by Popen
    return float(usage.ru_utime + usage.ru_stime)


def measure(name: str, argv: list[str], runs: int, env: dict[str, str]) -> tuple[float, float]:
    cpu_seconds(argv, env)  # once to warm the file cache and write .pyc files
    samples = [cpu_seconds(argv, env) for _ in range(runs)]
    low, median = min(samples), statistics.median(samples)
    print(f"{name:<34} min {low:6.3f} s   median {median:6.3f} s   CPU", flush=True)
    return low, median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--tusk", type=Path, default=Path(sys.executable).with_name("tusk"))
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
    env["TUSK_REPO_URL"] = "http://127.0.0.1:9"  # closed: connection refused at once
    python = [sys.executable]
    _, base = measure("python -c pass", [*python, "-c", "pass"], args.runs, env)
    floor_argv = [*python, "-c", FLOOR]
    _, floor = measure("floor (typer, rich, httpx, settings)", floor_argv, args.runs, env)
    ls = [str(args.tusk), "ls", "raw@master"]
    _, median = measure("tusk ls raw@master", ls, args.runs, env)
    _, help_median = measure("tusk --help", [str(args.tusk), "--help"], args.runs, env)
    print(f"tusk ls / floor (median): {median / floor:.2f}x; above the interpreter: "
          f"{median - base:.3f} s; tusk --help {help_median:.3f} s")
    verdict = "met" if median <= TARGET_SECONDS else "missed"
    print(f"target {TARGET_SECONDS} s CPU for tusk ls (median): {verdict}")


if __name__ == "__main__":
    main()
