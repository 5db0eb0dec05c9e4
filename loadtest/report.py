"""What the benchmarks share: a figure against its target and baseline, and the report."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass, field
from typing import Any

import psutil


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    target: str
    met: bool | None
    baseline_name: str = ""
    baseline: float | None = None
    ratio: float | None = None


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, figure: Figure) -> None:
        self.figures.append(figure)
        mark = {True: "ok", False: "MISSED", None: "-"}[figure.met]
        say(f"  {figure.name}: {figure.value:,.3g} {figure.unit} (target {figure.target}) {mark}")


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def environment(**versions: str) -> dict[str, Any]:
    """The machine a run happened on, with the load before it; ``versions`` of what it ran."""
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "load_average_before": os.getloadavg(),
        "nproc": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / (1 << 30), 1),
        "cpu": cpu,
        "python": platform.python_version(),
        **versions,
    }


def print_table(report: Report, stack: str, *, decimals: int = 3) -> None:
    """The figures as a table on stdout, then the machine and ``stack`` (what was measured)."""
    rows = [("figure", "value", "target", "met", "baseline", "baseline value", "ratio")]
    for f in report.figures:
        rows.append(
            (
                f.name,
                f"{f.value:,.{decimals}f} {f.unit}",
                f.target,
                {True: "yes", False: "NO", None: "-"}[f.met],
                f.baseline_name,
                f"{f.baseline:,.{decimals}f} {f.unit}" if f.baseline is not None else "",
                f"{f.ratio:.2f}" if f.ratio is not None else "",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    env = report.environment
    print(
        f"\nmachine: {env['nproc']} cores ({env['cpu']}), {env['memory_gib']} GiB, "
        f"load {env['load_average_before'][0]:.2f} before / "
        f"{env['load_average_after'][0]:.2f} after; Python {env['python']}, {stack}"
    )
