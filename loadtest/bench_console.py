"""The console in a real browser: the DAG of 50 pipelines, and a 10,000-file directory.

    .venv/bin/python -m loadtest.bench_console [--loads N] [--json OUT]

Starts `tusk up` (console included) on free ports and drives Debian's Chromium through
Playwright (installed as the tests install it). Each figure is the median of N page loads
(default 7), timed inside the browser from navigation start; the baselines are the same pages
with one pipeline and with a 10-file directory, measured in the same run. "Freezing" is the
longest task the page ran on the browser's main thread (the Long Tasks API), per load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from playwright.async_api import Page

from loadtest.report import Figure, Report, environment, print_table, say
from tests.console.browser import chromium
from tests.console.stack import tusk_up
from tusk.client.pipelines import TriggerClient
from tusk.client.repo import RepoClient

PIPELINES = 50
FILES = 10_000
DAG_TARGET_MS = 1000.0
PAGE_TARGET_MS = 1000.0
FREEZE_TARGET_MS = 200.0

# Watches the main thread from the first byte: every long task (>50 ms) is recorded.
OBSERVE_LONG_TASKS = """
window.__longest = 0;
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    window.__longest = Math.max(window.__longest, entry.duration);
  }
}).observe({type: "longtask", buffered: true});
"""


def spec(index: int) -> str:
    """A DAG of 50: a chain with branches (each pipeline reads one or two earlier ones)."""
    name = f"p{index:02d}"
    if index == 0:
        source = {"pfs": {"repo": "raw", "branch": "master", "glob": "/"}}
    elif index % 5 == 0:
        source = {"cross": [
            {"pfs": {"repo": f"p{(index - 1):02d}", "branch": "master", "glob": "/"}},
            {"pfs": {"repo": f"p{(index // 2):02d}", "branch": "master", "glob": "/"}},
        ]}
    else:
        source = {"pfs": {"repo": f"p{(index - 1) // 2:02d}", "branch": "master", "glob": "/"}}
    return json.dumps({
        "pipeline": {"name": name}, "input": source,
        "transform": {"image": "python:3.11", "cmd": ["true"]},
    })


async def time_dag(page: Page, url: str, loads: int) -> tuple[list[float], list[float]]:
    """Until the graph is drawn, and of that until the HTML had arrived (the server's part)."""
    drawn, served = [], []
    for _ in range(loads):
        await page.goto(url)
        await page.wait_for_selector("svg.graph[data-rendered=true]", state="attached")
        drawn.append(await page.evaluate(
            "performance.getEntriesByName('graph-rendered')[0].startTime"
        ))
        served.append(await page.evaluate(
            "performance.getEntriesByType('navigation')[0].responseEnd"
        ))
    return drawn, served


async def time_listing(page: Page, url: str, loads: int) -> tuple[list[float], list[float]]:
    ready, frozen = [], []
    for _ in range(loads):
        await page.goto(url, wait_until="load")
        rows = await page.locator("table#listing tbody tr").count()
        assert rows > 0, "the listing is empty"
        ready.append(await page.evaluate(
            "performance.getEntriesByType('navigation')[0].loadEventEnd"
        ))
        frozen.append(await page.evaluate("window.__longest"))
    return ready, frozen


def figure(report: Report, name: str, values: list[float], target: float,
           baseline_name: str, baseline: list[float], unit: str = "ms") -> None:
    value, base = statistics.median(values), statistics.median(baseline)
    report.add(Figure(
        name=name, value=value, unit=unit, target=f"≤ {target:,.0f} {unit}", met=value <= target,
        baseline_name=baseline_name, baseline=base, ratio=value / base if base else None,
    ))


async def run(work: Path, loads: int) -> Report:
    report = Report(environment=environment())
    async with tusk_up(work) as stack, chromium() as browser:
        page = await browser.new_page()
        await page.add_init_script(OBSERVE_LONG_TASKS)
        async with RepoClient(stack.urls["REPO"]) as repos, TriggerClient(
            stack.urls["TRIGGER"]
        ) as trigger:
            await repos.create_repo("raw")
            await trigger.create_pipeline(spec(0))
            say("DAG of 1 pipeline (baseline)")
            one, one_served = await time_dag(page, stack.console + "/", loads)
            for index in range(1, PIPELINES):
                await trigger.create_pipeline(spec(index))
            say(f"DAG of {PIPELINES} pipelines")
            fifty, fifty_served = await time_dag(page, stack.console + "/", loads)

            say(f"a commit of {FILES:,} files in /big and 10 in /small")
            commit = await repos.start_commit("raw")
            await repos.put_files("raw", commit.id, [
                *((f"big/f{i:05d}.txt", b"x") for i in range(FILES)),
                *((f"small/f{i:02d}.txt", b"x") for i in range(10)),
            ])
            await repos.finish_commit("raw", commit.id)
        base = stack.console + "/repos/raw/files/master?path="
        small, small_frozen = await time_listing(page, base + "/small", loads)
        first, first_frozen = await time_listing(page, base + "/big", loads)
        deep, deep_frozen = await time_listing(page, base + "/big&cursor=f09000.txt", loads)
        await page.close()
    figure(report, f"DAG of {PIPELINES} pipelines rendered", fifty, DAG_TARGET_MS,
           "DAG of 1 pipeline", one)
    report.add(Figure(
        name=f"  of which the HTML's arrival ({PIPELINES} pipelines)",
        value=statistics.median(fifty_served), unit="ms", target="-", met=None,
        baseline_name="DAG of 1 pipeline", baseline=statistics.median(one_served),
        ratio=statistics.median(fifty_served) / statistics.median(one_served),
    ))
    figure(report, f"{FILES:,}-file directory, first page loaded", first, PAGE_TARGET_MS,
           "10-file directory", small)
    figure(report, f"{FILES:,}-file directory, page after f09000 loaded", deep, PAGE_TARGET_MS,
           "10-file directory", small)
    figure(report, "longest main-thread task, 10,000-file pages", first_frozen + deep_frozen,
           FREEZE_TARGET_MS, "10-file directory", small_frozen)
    report.details["samples"] = {
        "dag_50": fifty, "dag_1": one, "dag_50_served": fifty_served,
        "dag_1_served": one_served, "big_first": first, "big_deep": deep, "small": small,
        "longest_task_big": first_frozen + deep_frozen, "longest_task_small": small_frozen,
    }
    report.environment["load_average_after"] = os.getloadavg()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loads", type=int, default=7, help="page loads per figure")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the results here")
    args = parser.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tusk-bench-console-") as work:
        report = asyncio.run(run(Path(work), args.loads))
    print()
    print_table(report, "tusk up (SQLite, local object store), Debian's Chromium headless",
                decimals=1)
    say(f"done in {time.monotonic() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({
            "environment": report.environment,
            "figures": [asdict(f) for f in report.figures],
            "details": report.details,
        }, indent=2, default=str))
    return 0 if all(f.met is not False for f in report.figures) else 1


if __name__ == "__main__":
    sys.exit(main())
