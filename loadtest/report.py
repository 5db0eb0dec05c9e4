"""What the benchmarks share: a figure against its target and baseline, and the report."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any


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
