"""Every console page against a real `tusk up`, over HTTP: what each shows, paging, previews,
live events, and the 4xx pages bad input gets."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.console.scenario import CSV_ROWS, FAILURE, MANY_FILES, PNG, World, build_world
from tests.console.stack import Stack
from tusk.client.pipelines import TriggerClient
from tusk.client.repo import RepoClient

HTML = {"Accept": "text/html"}


@pytest.fixture(scope="module")
async def world(stack: Stack) -> World:
    async with RepoClient(stack.urls["REPO"]) as repos, TriggerClient(
        stack.urls["TRIGGER"]
    ) as trigger:
        return await build_world(repos, trigger)


@pytest.fixture
async def console(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.console, headers=HTML, timeout=60) as client:
        yield client


def graph_of(html: str) -> dict[str, object]:
    match = re.search(r"data-graph='([^']*)'", html)
    assert match, "the page has no graph"
    data: dict[str, object] = json.loads(match[1])
    return data


async def test_the_dag_shows_repos_and_pipelines_with_their_last_state(
    console: httpx.AsyncClient, world: World
) -> None:
    page = await console.get("/")
    assert page.status_code == 200
    nodes = {n["id"]: n for n in graph_of(page.text)["nodes"]}  # type: ignore[attr-defined]
    assert nodes["repo:raw"]["href"] == "/repos/raw"
    assert nodes["pipeline:copy"]["state"] == "success"
    assert nodes["pipeline:validate"]["state"] == "failure"
    edges = graph_of(page.text)["edges"]
    assert {"source": "repo:raw", "target": "pipeline:copy"} in edges  # type: ignore[operator]


async def test_a_repo_shows_branches_and_its_commit_log(
    console: httpx.AsyncClient, world: World
) -> None:
    page = await console.get("/repos/raw")
    assert page.status_code == 200
    assert "master" in page.text
    assert world.first.id[:12] in page.text
    assert world.second.id[:12] in page.text
    assert page.text.index(world.second.id[:12]) < page.text.index(world.first.id[:12])


async def test_a_directory_of_many_files_pages(console: httpx.AsyncClient, world: World) -> None:
    first = await console.get("/repos/raw/files/master", params={"path": "/many"})
    assert first.status_code == 200
    names = re.findall(r">(f\d{4}\.txt)<", first.text)
    assert names == [f"f{i:04d}.txt" for i in range(100)]
    cursor = re.search(r'cursor=([^"&]+)"', first.text)
    assert cursor, "no next page link"
    second = await console.get(
        "/repos/raw/files/master", params={"path": "/many", "cursor": cursor[1]}
    )
    assert re.findall(r">(f\d{4}\.txt)<", second.text) == [
        f"f{i:04d}.txt" for i in range(100, MANY_FILES)
    ]
    assert "Next page" not in second.text


async def test_a_csv_previews_as_a_table_page_by_page(
    console: httpx.AsyncClient, world: World
) -> None:
    url = f"/repos/raw/files/{world.first.id}"
    first = await console.get(url, params={"path": "/data.csv"})
    assert first.status_code == 200
    assert "<th scope=\"col\">amount</th>" in first.text
    assert first.text.count("<tr><td class=\"muted\">") == 100
    assert "<td>Smith, a0</td>" in first.text  # the quoted comma stays in its cell
    last = await console.get(url, params={"path": "/data.csv", "page": 2})
    assert last.text.count("<tr><td class=\"muted\">") == CSV_ROWS - 200
    assert f"<td>Smith, a{CSV_ROWS - 1}</td>" in last.text
    assert "Next rows" not in last.text


async def test_json_text_and_images_preview(console: httpx.AsyncClient, world: World) -> None:
    meta = await console.get("/repos/raw/files/master", params={"path": "/meta.json"})
    assert '"a": [\n    1,' in meta.text.replace("&#34;", '"')
    notes = await console.get("/repos/raw/files/master", params={"path": "/notes.txt"})
    assert "hello from the console test" in notes.text
    image = await console.get("/repos/raw/files/master", params={"path": "/pixel.png"})
    assert '<img class="preview"' in image.text


async def test_raw_files_stream_with_a_safe_type(console: httpx.AsyncClient, world: World) -> None:
    png = await console.get("/repos/raw/raw/master", params={"path": "/pixel.png"})
    assert png.status_code == 200
    assert png.content == PNG
    assert png.headers["content-type"] == "image/png"
    html = await console.get("/repos/raw/raw/master", params={"path": "/page.html"})
    assert html.headers["content-type"].startswith("text/plain")
    assert html.headers["x-content-type-options"] == "nosniff"


async def test_diff_between_two_commits(console: httpx.AsyncClient, world: World) -> None:
    page = await console.get(
        "/repos/raw/diff", params={"from": world.first.id, "to": world.second.id}
    )
    assert page.status_code == 200
    row = r'<tr class="change-(\w+)"><td>\w+</td>\s*<td>(?:<a [^>]*>)?([^<]+)'
    rows = re.findall(row, page.text)
    assert sorted(rows) == [("added", "/more.txt"), ("modified", "/data.csv")]


async def test_a_pipeline_shows_spec_jobs_charts_and_failed_datums(
    console: httpx.AsyncClient, world: World
) -> None:
    page = await console.get("/pipelines/copy")
    assert page.status_code == 200
    assert "glob: /*" in page.text
    assert world.copy_job.id[:12] in page.text
    assert page.text.count('<svg class="chart"') == 2
    failing = await console.get("/pipelines/validate")
    assert "Failed datums" in failing.text
    assert f"/jobs/{world.failed_job.id}/datums/" in failing.text


async def test_a_job_lists_its_datums_and_a_failed_one_has_its_log(
    console: httpx.AsyncClient, stack: Stack, world: World
) -> None:
    job = world.failed_job
    page = await console.get(f"/jobs/{job.id}")
    assert page.status_code == 200
    assert '<progress id="progress"' in page.text
    failed = await console.get(f"/jobs/{job.id}", params={"state": "failed"})
    links = re.findall(rf'href="(/jobs/{job.id}/datums/[0-9a-zA-Z_-]+)"', failed.text)
    assert len(links) == 1
    datum = await console.get(links[0])
    assert FAILURE in datum.text
    assert "bad.csv" in datum.text


async def test_lineage_walks_up_and_down_with_the_global_id(
    console: httpx.AsyncClient, world: World
) -> None:
    page = await console.get(f"/lineage/raw/{world.second.id}")
    assert page.status_code == 200
    assert world.second.global_id in page.text
    ids = {n["id"] for n in graph_of(page.text)["nodes"]}  # type: ignore[attr-defined]
    assert f"raw@{world.second.id}" in ids
    assert f"copy@{world.copy_job.output_commit}" in ids  # derived: down
    up = await console.get(f"/lineage/copy/{world.copy_job.output_commit}")
    assert f"raw@{world.second.id}" in {n["id"] for n in graph_of(up.text)["nodes"]}  # type: ignore[attr-defined]


async def test_models_page_says_how_to_serve_one(console: httpx.AsyncClient) -> None:
    page = await console.get("/models")
    assert page.status_code == 200
    assert "No models are configured" in page.text


@pytest.mark.parametrize(
    ("url", "status", "words"),
    [
        ("/repos/nope", 404, "nope"),
        ("/repos/raw/files/master?path=/missing.txt", 404, "missing.txt"),
        ("/repos/raw/files/nobranch?path=/", 404, "nobranch"),
        ("/repos/raw/raw/master?path=/many", 400, "directory"),
        ("/pipelines/nope", 404, "nope"),
        ("/jobs/" + "0" * 32, 404, "0" * 32),
        ("/jobs/not-a-job", 400, "job"),
        ("/lineage/raw/" + "f" * 32, 404, "f" * 32),
        ("/no/such/page", 404, "no such page"),
    ],
)
async def test_bad_input_gets_a_clear_4xx_page(
    console: httpx.AsyncClient, world: World, url: str, status: int, words: str
) -> None:
    page = await console.get(url)
    assert page.status_code == status, page.text[:500]
    assert words in page.text
    assert "<!doctype html>" in page.text


async def test_an_invalid_datum_state_is_named(console: httpx.AsyncClient, world: World) -> None:
    page = await console.get(f"/jobs/{world.copy_job.id}", params={"state": "bogus"})
    assert page.status_code == 400
    assert "state" in page.text


async def test_restart_runs_the_pipeline_again_as_a_new_version(
    console: httpx.AsyncClient, stack: Stack, world: World
) -> None:
    answer = await console.post(f"/jobs/{world.copy_job.id}/restart")
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/pipelines/copy?restarted=")
    async with TriggerClient(stack.urls["TRIGGER"]) as trigger:
        jobs = [j async for j in trigger.list_jobs(pipeline="copy")]
        newer = [j for j in jobs if j.version > world.copy_job.version]
        assert newer, "restart made no new job"
        assert newer[0].inputs[0].commit == world.second.id


async def test_events_stream_the_bus_live(stack: Stack, world: World) -> None:
    async with httpx.AsyncClient(base_url=stack.console, timeout=120) as client, client.stream(
        "GET", "/events"
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.aiter_lines()
        assert (await anext(lines)).startswith("retry:")
        async with RepoClient(stack.urls["REPO"]) as repos:
            commit = await repos.start_commit("uploads")
            await repos.put_file("uploads", commit.id, "/fine.csv", b"id\n2\n")
            await repos.finish_commit("uploads", commit.id)
        kinds: list[str] = []
        async with asyncio.timeout(120):
            async for line in lines:
                if not line.startswith("data: "):
                    continue
                event = json.loads(line[6:])
                kinds.append(event["kind"])
                if event.get("pipeline") == "validate" and event.get("state") in (
                    "success", "failure"
                ):
                    break
        assert "commit.finished" in kinds
        assert "job.created" in kinds


async def test_a_repo_of_a_project_has_its_pages(
    console: httpx.AsyncClient, stack: Stack, world: World
) -> None:
    async with RepoClient(stack.urls["REPO"]) as repos:
        await repos.create_project("vision")
        await repos.create_repo("vision/images")
        commit = await repos.start_commit("vision/images", "master")
        await repos.put_file("vision/images", commit.id, "/a.txt", b"in vision")
        await repos.finish_commit("vision/images", commit.id)
    page = await console.get("/repos/vision%2Fimages")
    assert page.status_code == 200, page.text
    assert 'href="/repos/vision%2Fimages/files/master?path=/"' in page.text
    files = await console.get("/repos/vision%2Fimages/files/master", params={"path": "/"})
    assert files.status_code == 200
    assert "a.txt" in files.text
    raw = await console.get("/repos/vision%2Fimages/raw/master", params={"path": "/a.txt"})
    assert raw.content == b"in vision"
    lineage = await console.get(f"/lineage/vision%2Fimages/{commit.id}")
    assert lineage.status_code == 200
    nodes = {n["id"]: n for n in graph_of((await console.get("/")).text)["nodes"]}  # type: ignore[attr-defined]
    assert nodes["repo:vision/images"]["href"] == "/repos/vision%2Fimages"
