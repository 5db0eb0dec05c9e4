"""The console in a real browser (Debian's Chromium through Playwright) against `tusk up`
running the credit example: every page renders (and is captured), the DAG follows a new
commit live, a failing datum's log is two clicks away, the keyboard reaches everything."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, Page, expect

from tests.console.browser import artifacts_dir, chromium
from tests.console.conftest import TOKEN
from tests.console.scenario import FAILURE, VALIDATE, pipeline_spec, wait_for_job
from tests.console.stack import ROOT, Stack, tusk_up
from tusk.client.models import CommitInfo, JobInfo
from tusk.client.pipelines import TriggerClient
from tusk.client.repo import RepoClient

EXAMPLE = ROOT / "examples" / "credit"
MODEL = "credit=train@master:/model.onnx"


def generate(day: int, out: Path, rows: int = 1200) -> Path:
    subprocess.run(
        [sys.executable, str(EXAMPLE / "generate.py"), "--day", str(day), "--rows", str(rows),
         "--out", str(out)],
        check=True, capture_output=True,
    )
    return out / f"day-{day:03d}.csv"


@dataclass(frozen=True)
class Credit:
    stack: Stack
    raw: CommitInfo
    train: JobInfo
    failed: JobInfo
    data: Path


async def put(repos: RepoClient, repo: str, files: dict[str, Path | bytes]) -> CommitInfo:
    commit = await repos.start_commit(repo)
    for path, content in files.items():
        await repos.put_file(repo, commit.id, path, content)
    return await repos.finish_commit(repo, commit.id)


@pytest.fixture(scope="module")
async def credit(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Credit]:
    workdir = tmp_path_factory.mktemp("console-credit")
    async with tusk_up(workdir, models=(MODEL,)) as stack:
        async with RepoClient(stack.urls["REPO"]) as repos, TriggerClient(
            stack.urls["TRIGGER"]
        ) as trigger:
            await repos.create_repo("raw", "raw customer exports")
            await repos.create_repo("uploads", "files customers send; validate checks them")
            for step in ("preprocess", "train"):
                await trigger.create_pipeline((EXAMPLE / f"{step}.yaml").read_bytes())
            await trigger.create_pipeline(pipeline_spec("validate", "uploads", "/*", VALIDATE))
            data = workdir / "data-files"
            raw = await put(repos, "raw", {"/day-001.csv": generate(1, data)})
            await wait_for_job(trigger, "preprocess", raw.global_id, timeout=300)
            train = await wait_for_job(trigger, "train", raw.global_id, timeout=300)
            assert train.state == "success", stack.log_tail()
            uploads = await put(repos, "uploads", {"/good.csv": b"id\n1\n", "/bad.csv": b"id\n\n"})
            failed = await wait_for_job(trigger, "validate", uploads.global_id)
            assert failed.state == "failure"
        yield Credit(stack, raw, train, failed, data)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[BrowserContext]:
    async with chromium() as context:
        yield context


@pytest.fixture
async def page(browser: BrowserContext) -> AsyncIterator[Page]:
    opened = await browser.new_page()
    yield opened
    await opened.close()


async def shot(page: Page, name: str) -> None:
    await page.screenshot(path=artifacts_dir() / f"{name}.png", full_page=True)


async def test_every_page_renders(page: Page, credit: Credit) -> None:
    base = credit.stack.console
    await page.goto(base + "/")
    await expect(page.locator("svg.graph[data-rendered=true]")).to_be_visible()
    await expect(page.locator('g.node[data-node="pipeline:train"]')).to_have_attribute(
        "data-state", "success"
    )
    await shot(page, "dag")

    await page.goto(base + "/repos/raw")
    await expect(page.get_by_role("heading", name="Repo raw")).to_be_visible()
    await shot(page, "repo")

    await page.goto(base + "/repos/raw/files/master?path=/day-001.csv")
    await expect(page.locator("table#csv tbody tr")).to_have_count(100)
    await shot(page, "file-csv")

    await page.goto(base + "/repos/preprocess/files/master?path=/")
    await expect(page.locator("table#listing")).to_contain_text("report.json")
    await shot(page, "files")
    await page.get_by_role("link", name="report.json").click()
    await expect(page.locator("pre.preview.json")).to_contain_text('"rows_in"')
    await shot(page, "file-json")

    await page.goto(base + f"/repos/train/diff?to={credit.train.output_commit}")
    await expect(page.locator("table#diff")).to_contain_text("/model.onnx")
    await shot(page, "diff")

    await page.goto(base + "/pipelines/train")
    await expect(page.locator("svg.chart")).to_have_count(2)
    await expect(page.locator("table#jobs")).to_contain_text("success")
    await shot(page, "pipeline")

    await page.goto(base + f"/jobs/{credit.train.id}")
    progress = page.locator("#progress")
    await expect(progress).to_be_visible()
    assert await progress.evaluate("p => p.value > 0 && p.value === p.max")
    await shot(page, "job")

    await page.goto(base + f"/lineage/train/{credit.train.output_commit}")
    await expect(page.locator("svg.graph[data-rendered=true]")).to_be_visible()
    await expect(page.locator("#global-id")).to_have_text(credit.raw.global_id)
    await expect(page.locator(f'g.node[data-node="raw@{credit.raw.id}"]')).to_be_visible()
    await shot(page, "lineage")

    await page.goto(base + "/models")
    version = (credit.train.output_commit or "")[:12]
    await expect(page.locator("table#models")).to_contain_text(version)


async def test_a_prediction_from_the_model_page(page: Page, credit: Credit) -> None:
    await page.goto(credit.stack.console + "/models")  # the first reading of the metrics
    await page.goto(credit.stack.console + "/models/credit")
    await expect(page.get_by_label("Open Inference Protocol v2 request (JSON)")).to_be_visible()
    await page.get_by_role("button", name="Predict").click()
    await expect(page.locator("#answer")).to_contain_text("credit_limit")
    await expect(page.locator("#answer")).to_contain_text((credit.train.output_commit or "")[:12])
    await shot(page, "model")
    await page.get_by_label("Open Inference Protocol v2 request (JSON)").fill('{"inputs": 3}')
    await page.get_by_role("button", name="Predict").click()
    await expect(page.locator("#predict-error")).to_contain_text('"inputs" list')
    # The traffic since the first reading: a rate and the latency of the one prediction. A rate
    # needs readings at least a second apart (MIN_WINDOW_SECONDS); on a quick machine all of the
    # above fits in less, so the page is read again until the window has opened.
    row = page.locator("table#models tbody tr").first
    rate = await _rate_once_the_window_opens(page, credit.stack.console + "/models")
    assert rate > 0
    await expect(row.locator("td").nth(6)).to_have_text(re.compile(r"^[\d.]+ / [\d.]+ ms$"))
    await shot(page, "models")


async def _rate_once_the_window_opens(page: Page, url: str) -> float:
    loop = asyncio.get_running_loop()
    give_up = loop.time() + 120  # ends a hang only; the window opens one second after /models
    while True:
        await page.goto(url)
        text = await page.locator("table#models tbody tr").first.locator("td").nth(5).inner_text()
        if re.fullmatch(r"[\d.e+-]+", text.strip()):
            return float(text)
        assert loop.time() < give_up, f"no request rate on the models page: {text!r}"


async def test_a_failing_datums_log_is_two_clicks_from_the_dag(
    page: Page, credit: Credit
) -> None:
    await page.goto(credit.stack.console + "/")
    node = page.locator('g.node[data-node="pipeline:validate"]')
    await expect(node).to_have_attribute("data-state", "failure")
    await node.click()  # 1: the pipeline, with its last job's failed datums
    await page.get_by_role("link", name="log of datum").first.click()  # 2: the datum's log
    await expect(page.locator("pre#log")).to_contain_text(FAILURE)
    await shot(page, "datum")


async def test_a_new_commit_turns_the_pipeline_running_then_success_live(
    page: Page, credit: Credit
) -> None:
    await page.goto(credit.stack.console + "/")
    await expect(page.locator("svg.graph[data-rendered=true]")).to_be_visible()
    await expect(page.locator("body[data-following=true]")).to_have_count(1)
    # Every state the node takes is recorded; a mark on the window proves no reload happened.
    await page.evaluate("""() => {
        window.__seen = [];
        window.__sameDocument = true;
        const node = document.querySelector('g.node[data-node="pipeline:preprocess"]');
        new MutationObserver(() => window.__seen.push(node.dataset.state))
            .observe(node, {attributes: true, attributeFilter: ["data-state"]});
    }""")
    async with RepoClient(credit.stack.urls["REPO"]) as repos, TriggerClient(
        credit.stack.urls["TRIGGER"]
    ) as trigger:
        day2 = await put(repos, "raw", {"/day-002.csv": generate(2, credit.data)})
        job = await wait_for_job(trigger, "preprocess", day2.global_id, timeout=300)
    assert job.state == "success"
    node = page.locator('g.node[data-node="pipeline:preprocess"]')
    await expect(node).to_have_attribute("data-state", "success")
    seen = await page.evaluate("window.__seen")
    assert "running" in seen, seen
    assert seen.index("running") < len(seen) - 1 - seen[::-1].index("success")
    assert await page.evaluate("window.__sameDocument") is True


async def test_the_keyboard_reaches_a_pipeline_from_the_dag(page: Page, credit: Credit) -> None:
    await page.goto(credit.stack.console + "/")
    await expect(page.locator("svg.graph[data-rendered=true]")).to_be_visible()
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent") == "Skip to content"
    for _ in range(20):
        await page.keyboard.press("Tab")
        label = await page.evaluate("document.activeElement.getAttribute('aria-label')")
        if label and label.startswith("pipeline train"):
            break
    else:
        pytest.fail("Tab never reached the train node of the DAG")
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(credit.stack.console + "/pipelines/train")
    unlabeled = await page.evaluate("""() => [...document.querySelectorAll(
        'input:not([type=hidden]), textarea, select')].filter(e => !e.labels?.length
        && !e.getAttribute('aria-label')).length""")
    assert unlabeled == 0


async def test_signing_in_with_a_token(browser: BrowserContext, guarded_stack: Stack) -> None:
    page = await browser.new_page()
    try:
        await page.goto(guarded_stack.console + "/models")
        await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        await shot(page, "login")
        await page.get_by_label("API token").fill("wrong")
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("alert")).to_contain_text("refused")
        await page.get_by_label("API token").fill(TOKEN)
        await page.get_by_role("button", name="Sign in").click()
        await expect(page).to_have_url(guarded_stack.console + "/models")
        await expect(page.get_by_role("heading", name="Served models")).to_be_visible()
    finally:
        await page.close()


SLOW = """
import os, time
root = os.environ.get("TUSK_PFS_ROOT", "/pfs")
for name in os.listdir(os.path.join(root, "batches")):
    print("working on", name, flush=True)
    time.sleep(1.5)  # a datum that takes a while, so that the page sees the job run
"""


async def test_a_job_page_follows_its_job_live(page: Page, credit: Credit) -> None:
    async with RepoClient(credit.stack.urls["REPO"]) as repos, TriggerClient(
        credit.stack.urls["TRIGGER"]
    ) as trigger:
        await repos.create_repo("batches")
        await trigger.create_pipeline(pipeline_spec("slow", "batches", "/*", SLOW))
        change = await put(repos, "batches", {f"/b{i}.csv": b"x\n" for i in range(4)})
        async with asyncio.timeout(120):
            while not (jobs := [j async for j in trigger.list_jobs(pipeline="slow")]):
                await asyncio.sleep(0.1)
        job = jobs[0]
        assert job.global_id == change.global_id
        await page.goto(f"{credit.stack.console}/jobs/{job.id}")
        await page.evaluate("window.__sameDocument = true")
        before = await page.locator("#job-state").text_content() or ""
        assert "success" not in before, "the job ended before its page was open"
        ended = await wait_for_job(trigger, "slow", change.global_id)
    assert ended.state == "success"
    await expect(page.locator("#job-state")).to_contain_text("success", timeout=60_000)
    await expect(page.locator("#progress")).to_have_attribute("value", "4")
    await expect(page.locator("table#datums tbody tr.datum-success")).to_have_count(4)
    assert await page.evaluate("window.__sameDocument") is True
    assert await page.evaluate("document.body.dataset.refreshed") is not None
