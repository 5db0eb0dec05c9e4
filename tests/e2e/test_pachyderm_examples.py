"""Pachyderm's examples through `tusk up` and the CLI as a user moving from Pachyderm runs them:
their specs unchanged from Pachyderm's files, their commands (tusk's own code, written to the
same command lines) in the sandbox reading /pfs and Pachyderm's variables.

- retail: inner join, outer join and group; then a spec update that changes only parallelism,
  which reprocesses nothing;
- housing-prices: a regression model and its plots, trained again when the data grows;
- opencv: edges per image, then ImageMagick's montage of images and edges; a new image is the
  only datum the next edges job processes."""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import httpx
import joblib
import numpy as np
import pandas as pd
import pytest

from tests.backing.bubblewrap import ensure_installed
from tests.backing.common import free_port
from tests.backing.imagemagick import ensure_installed as ensure_imagemagick
from tusk.client.models import JobInfo
from tusk.client.pipelines import TriggerClient
from tusk.client.repo import RepoClient

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "pachyderm"
CORPUS = ROOT / "tests" / "pipelines" / "pachyderm_corpus"
TUSK = Path(sys.executable).parent / "tusk"

STORES = {
    "1": {"storeid": "1", "name": "Main St", "address": {"zipcode": "10001"}},
    "2": {"storeid": "2", "name": "Harbour", "address": {"zipcode": "20002"}},
    "3": {"storeid": "3", "name": "Airport", "address": {"zipcode": "30003"}},
}


@dataclass
class Stack:
    repos: RepoClient
    trigger: TriggerClient
    env: dict[str, str]
    log: Path

    def tusk(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(TUSK), *map(str, args)], env=self.env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with _running(tmp_path, code=EXAMPLES / "retail") as running:
        yield running


@asynccontextmanager
async def _running(tmp_path: Path, code: Path, **settings: str) -> AsyncIterator[Stack]:
    """`tusk up` whose pipeline commands run in ``code``, with more ``TUSK_*`` settings."""
    ensure_installed()  # bubblewrap: the commands run sandboxed, as in a container
    ports = {
        name: free_port() for name in ("REPO", "TRIGGER", "SCHEDULER", "INFERENCE", "CONSOLE")
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
    env.update({f"TUSK_{n}_PORT": str(p) for n, p in ports.items()})
    env.update({f"TUSK_{n}_URL": f"http://127.0.0.1:{p}" for n, p in ports.items()})
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["TUSK_SCHEDULER_CODE_DIR"] = str(code)
    env["TUSK_WORKER_SANDBOX"] = "bwrap"
    env["TUSK_S3_GATEWAY_PORT"] = "0"  # not needed here; its default port may be taken
    env.update(settings)
    log = tmp_path / "tusk.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(TUSK), "up", "--data-dir", str(tmp_path / "data")],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        async with httpx.AsyncClient() as probe:
            for _ in range(3000):  # up to 300 s: a loaded machine starts slowly
                try:
                    url = env["TUSK_SCHEDULER_URL"]
                    if (await probe.get(f"{url}/healthz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert process.poll() is None, log.read_text()[-5000:]
                await asyncio.sleep(0.1)
            else:
                pytest.fail(f"tusk up did not start:\n{log.read_text()[-5000:]}")
        async with (
            RepoClient(env["TUSK_REPO_URL"]) as repos,
            TriggerClient(env["TUSK_TRIGGER_URL"]) as trigger,
        ):
            yield Stack(repos, trigger, env, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail("tusk up did not stop within 60 s of SIGTERM")


async def _put(stack: Stack, repo: str, files: dict[str, object]) -> None:
    commit = await stack.repos.start_commit(repo, "master")
    for path, data in files.items():
        await stack.repos.put_file(repo, commit.id, path, json.dumps(data).encode())
    await stack.repos.finish_commit(repo, commit.id)


async def _settled(stack: Stack, pipeline: str, expected: dict[str, str]) -> None:
    """Wait until the pipeline's output is ``expected`` (its first job runs on the inputs'
    heads when it is created), failing at once if one of its jobs fails."""
    async with asyncio.timeout(300):
        while True:
            jobs = [j async for j in stack.trigger.list_jobs(pipeline=pipeline)]
            failed = [j for j in jobs if j.ended and j.state != "success"]
            assert not failed, (failed, stack.log.read_text()[-5000:])
            if jobs and all(j.ended for j in jobs) and await _outputs(stack, pipeline) == expected:
                return
            await asyncio.sleep(0.2)


async def _job(stack: Stack, pipeline: str, version: int) -> JobInfo:
    async with asyncio.timeout(300):
        while True:
            jobs = [j async for j in stack.trigger.list_jobs(pipeline=pipeline)]
            job = next((j for j in jobs if j.version == version and j.ended), None)
            if job is not None:
                assert job.state == "success", (job, stack.log.read_text()[-5000:])
                return job
            await asyncio.sleep(0.2)


async def _outputs(stack: Stack, repo: str) -> dict[str, str] | None:
    found: dict[str, str] = {}
    if (await stack.repos.inspect_repo(repo)).commit_count == 0:
        return None
    async with aclosing(stack.repos.list_dir(repo, "master", "/")) as entries:
        paths = [e.path async for e in entries if e.type == "file"]
    for path in paths:
        async with aclosing(stack.repos.get_file(repo, "master", path)) as pieces:
            found[path] = b"".join([p async for p in pieces]).decode()
    return found


async def test_retail_joins_and_group_from_pachyderms_specs(stack: Stack, tmp_path: Path) -> None:
    for repo in ("stores", "purchases", "returns"):
        await stack.repos.create_repo(repo)
    await _put(stack, "stores", {f"/STOREID{n}.txt": s for n, s in STORES.items()})
    await _put(
        stack,
        "purchases",
        {"/P1_STOREID1.txt": {"amount": 12.5}, "/P2_STOREID2.txt": {"amount": 7.25}},
    )
    await _put(
        stack, "returns", {"/R1_STOREID1.txt": {"amount": 2.5}, "/R2_STOREID9.txt": {"amount": 1}}
    )

    planned = stack.tusk("pipeline", "create", "-f", CORPUS / "s020.json", "--dry-run").stdout
    assert "would create pipeline inner_join (version 1): reads purchases, stores" in planned
    assert "DAG: + purchases -> inner_join" in planned
    assert [p.name for p in await stack.trigger.list_pipelines()] == []
    for spec in ("s020.json", "s023.json", "s019.json"):
        stack.tusk("pipeline", "create", "-f", CORPUS / spec)

    await _settled(
        stack,
        "inner_join",
        {
            "/10001.txt": "Purchase at store: 1 - Main St\n12.50\n",
            "/20002.txt": "Purchase at store: 2 - Harbour\n7.25\n",
        },
    )
    await _settled(
        stack,
        "outer_join",
        {
            "/10001.txt": "Return at store: 1\n2.50\n",
            "/20002.txt": "no return\n",
            "/30003.txt": "no return\n",
            "/unknown-9.txt": "Return at store: 9\n1.00\n",
        },
    )
    await _settled(
        stack,
        "group_store_revenue",
        {
            "/STOREID1.txt": "10.00\n",
            "/STOREID2.txt": "7.25\n",
            "/STOREID3.txt": "0.00\n",
            "/STOREID9.txt": "-1.00\n",
        },
    )

    logged = stack.tusk("logs", "-p", "inner_join").stdout
    assert "store 1 (10001): purchase of 12.50" in logged
    drawn = stack.tusk("pipeline", "draw").stdout.splitlines()
    assert drawn == [
        "purchases",
        "returns",
        "stores",
        "group_store_revenue ◀── purchases, returns, stores",
        "inner_join          ◀── purchases, stores",
        "outer_join          ◀── returns, stores",
    ]
    template = CORPUS / "s022.jsonnet"  # two specs, the second reading the first's output
    args = ("--arg", "suffix=1", "--arg", "tag=2.1.0")
    planned = stack.tusk("pipeline", "create", "--jsonnet", template, *args, "--dry-run").stdout
    assert "would create pipeline outer_join_1 (version 1): reads returns, stores" in planned
    assert "DAG: + outer_join_1 -> " in planned

    # A new version that changes only parallelism: the next job processes only the new datum.
    spec = json.loads((CORPUS / "s020.json").read_text())
    spec["parallelismSpec"] = {"constant": 3}
    updated = tmp_path / "inner_join.json"
    updated.write_text(json.dumps(spec))
    planned = stack.tusk("pipeline", "update", "-f", updated, "--dry-run").stdout
    assert "processed datums are kept" in planned
    stack.tusk("pipeline", "update", "-f", updated)
    await _put(stack, "purchases", {"/P3_STOREID3.txt": {"amount": 3}})
    job = await _job(stack, "inner_join", version=2)
    assert (job.version, job.counts.processed, job.counts.skipped) == (2, 1, 2)


async def _job_on(stack: Stack, pipeline: str, repo: str, commit: str) -> JobInfo:
    """The pipeline's job that read ``repo@commit``, once it ended; it must have succeeded."""
    async with asyncio.timeout(300):
        while True:
            async for job in stack.trigger.list_jobs(pipeline=pipeline):
                if job.ended and any(i.repo == repo and i.commit == commit for i in job.inputs):
                    assert job.state == "success", (job, stack.log.read_text()[-5000:])
                    return job
            await asyncio.sleep(0.2)


async def _files(stack: Stack, repo: str, ref: str) -> dict[str, bytes]:
    async with aclosing(stack.repos.list_dir(repo, ref, "/")) as entries:
        paths = [e.path async for e in entries if e.type == "file"]
    found = {}
    for path in paths:
        async with aclosing(stack.repos.get_file(repo, ref, path)) as pieces:
            found[path] = b"".join([p async for p in pieces])
    return found


async def _put_bytes(stack: Stack, repo: str, files: dict[str, bytes]) -> str:
    commit = await stack.repos.start_commit(repo, "master")
    for path, data in files.items():
        await stack.repos.put_file(repo, commit.id, path, data)
    await stack.repos.finish_commit(repo, commit.id)
    return commit.id


async def _provenance(stack: Stack, repo: str, commit: str) -> set[tuple[str, str]]:
    info = await stack.repos.inspect_commit(repo, commit)
    return {(p.repo, p.commit) for p in info.provenance}


def _housing_csv(rows: int, seed: int) -> bytes:
    """Columns as Pachyderm's housing data names them; the price rises with the rooms and
    falls with LSTAT and the pupil-teacher ratio."""
    rng = np.random.default_rng(seed)
    rm = rng.normal(6.3, 0.6, rows)
    lstat = rng.uniform(2, 30, rows)
    ptratio = rng.uniform(13, 22, rows)
    medv = 100_000 * rm - 9_000 * lstat - 8_000 * ptratio + rng.normal(0, 20_000, rows)
    lines = ["RM,LSTAT,PTRATIO,MEDV"]
    columns = zip(rm, lstat, ptratio, medv, strict=True)
    lines += [f"{a:.3f},{b:.2f},{c:.1f},{d:.0f}" for a, b, c, d in columns]
    return ("\n".join(lines) + "\n").encode()


HOUSING_OUTPUTS = {
    f"/housing-simplified_{what}"
    for what in ("pairplot.png", "corr_matrix.png", "cv_reg_output.png", "final_model.sav")
}


async def test_housing_prices_regression_from_pachyderms_spec(tmp_path: Path) -> None:
    async with _running(tmp_path, code=EXAMPLES / "housing-prices") as stack:
        await stack.repos.create_repo("housing_data")
        # The README's regression.json, as it is: `python regression.py --input
        # /pfs/housing_data/ --target-col MEDV --output /pfs/out/`.
        stack.tusk("pipeline", "create", "-f", CORPUS / "s034.json")
        first = await _put_bytes(
            stack, "housing_data", {"/housing-simplified.csv": _housing_csv(60, seed=1)}
        )
        job = await _job_on(stack, "regression", "housing_data", first)
        assert job.output_commit is not None
        outputs = await _files(stack, "regression", job.output_commit)
        assert set(outputs) == HOUSING_OUTPUTS
        for path, data in outputs.items():
            if path.endswith(".png"):
                plot = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
                assert plot is not None, path
                assert min(plot.shape[:2]) >= 300, (path, plot.shape)
        model = _model(tmp_path, outputs["/housing-simplified_final_model.sav"])
        assert _rows_trained_on(model) == 60
        big, small = model.predict(
            pd.DataFrame({"RM": [7.5, 5.0], "LSTAT": [3.0, 28.0], "PTRATIO": [14.0, 21.0]})
        )
        assert big > small + 100_000, (big, small)
        logged = stack.tusk("logs", "-p", "regression").stdout
        assert "housing-simplified.csv: 60 rows of 4 columns" in logged
        assert ("housing_data", first) in await _provenance(stack, "regression", job.output_commit)

        # The README's step 5: more data overwrites the file; the model is trained again.
        second = await _put_bytes(
            stack, "housing_data", {"/housing-simplified.csv": _housing_csv(150, seed=2)}
        )
        again = await _job_on(stack, "regression", "housing_data", second)
        assert again.output_commit not in (None, job.output_commit)
        outputs = await _files(stack, "regression", "master")
        assert set(outputs) == HOUSING_OUTPUTS
        model = _model(tmp_path, outputs["/housing-simplified_final_model.sav"])
        assert _rows_trained_on(model) == 150
        # Lineage both ways (the README's step 6): each model names its data, each data
        # commit the model it produced.
        provenance = await _provenance(stack, "regression", again.output_commit)
        assert ("housing_data", second) in provenance
        assert ("housing_data", first) not in provenance
        down = stack.tusk("lineage", "--down", f"housing_data@{first}", "--json").stdout
        derived = {(c["repo"], c["id"]) for c in json.loads(down)}
        assert ("regression", job.output_commit) in derived
        assert ("regression", again.output_commit) not in derived


def _model(tmp_path: Path, saved: bytes) -> Any:
    path = tmp_path / "final_model.sav"
    path.write_bytes(saved)
    return joblib.load(path)  # our own pipeline's output: trusted


def _rows_trained_on(forest: Any) -> int:
    # Each tree's root holds its bootstrap sample: as many draws as the rows it was fitted on.
    return round(forest.estimators_[0].tree_.weighted_n_node_samples[0])


def _picture(width: int, height: int, shape: str) -> np.ndarray:
    """Black with one white shape: its outline is the only edge."""
    image = np.zeros((height, width, 3), np.uint8)
    if shape == "rectangle":
        cv2.rectangle(image, (40, 30), (width - 40, height - 30), (255, 255, 255), thickness=-1)
    else:
        cv2.circle(image, (width // 2, height // 2), min(width, height) // 3, (255, 255, 255), -1)
    return image


def _encoded(image: np.ndarray, suffix: str) -> bytes:
    ok, data = cv2.imencode(suffix, image)
    assert ok
    return data.tobytes()


def _decoded(data: bytes, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    assert image is not None
    return image


def _montage_size(tiles: int) -> tuple[int, int]:
    """(width, height) of `montage -shadow -geometry 300x300+2+2` of ``tiles`` images:
    ImageMagick lays them out in a near-square grid of 304-pixel cells (300 and a 2-pixel
    border each side), plus the shadow's 4 pixels to the right and 4 below each row."""
    columns = math.ceil(math.sqrt(tiles))
    rows = math.ceil(tiles / columns)
    return columns * 304 + 4, rows * 308


async def test_opencv_edges_and_montage_from_pachyderms_specs(tmp_path: Path) -> None:
    ensure_imagemagick()  # the montage spec's stdin runs ImageMagick's `montage`
    code = EXAMPLES / "opencv"
    # `python3 /edges.py`: the image root stands in for the image that has the script at /.
    async with _running(tmp_path, code=code, TUSK_WORKER_IMAGE_ROOT=str(code)) as stack:
        await stack.repos.create_repo("images")
        stack.tusk("pipeline", "create", "-f", CORPUS / "s051.json")  # edges
        stack.tusk("pipeline", "create", "-f", CORPUS / "s054.json")  # montage
        pictures = {
            "/box.png": _picture(200, 150, "rectangle"),
            "/disc.png": _picture(160, 240, "circle"),
        }
        first = await _put_bytes(
            stack, "images", {p: _encoded(i, ".png") for p, i in pictures.items()}
        )
        edges_job = await _job_on(stack, "edges", "images", first)
        assert edges_job.output_commit is not None
        edges = await _files(stack, "edges", edges_job.output_commit)
        assert set(edges) == {"/box.png", "/disc.png"}
        box = _decoded(edges["/box.png"])
        assert box.shape == (150, 200)  # one channel, the picture's size
        assert box[27:34, 100].max() == 255  # the rectangle's top side
        assert box[75, 37:44].max() == 255  # its left side
        assert box[40:110, 50:150].max() == 0  # inside it: flat
        assert box[:20].max() == 0  # outside it: flat
        assert _decoded(edges["/disc.png"]).shape == (240, 160)

        montage_job = await _job_on(stack, "montage", "edges", edges_job.output_commit)
        assert montage_job.output_commit is not None
        assert {(i.repo, i.commit) for i in montage_job.inputs} == {
            ("images", first),
            ("edges", edges_job.output_commit),
        }
        montage = await _files(stack, "montage", montage_job.output_commit)
        assert set(montage) == {"/montage.png"}
        picture = _decoded(montage["/montage.png"], cv2.IMREAD_COLOR)
        assert (picture.shape[1], picture.shape[0]) == _montage_size(4)
        assert tuple(picture[1, 1]) == (235, 206, 135)  # SkyBlue (BGR) behind the tiles
        provenance = await _provenance(stack, "montage", montage_job.output_commit)
        assert {("images", first), ("edges", edges_job.output_commit)} <= provenance

        # More data streams in: only the new image is processed; the montage has all three.
        second = await _put_bytes(
            stack, "images", {"/wide.jpg": _encoded(_picture(320, 120, "rectangle"), ".jpg")}
        )
        edges_job = await _job_on(stack, "edges", "images", second)
        assert (edges_job.counts.processed, edges_job.counts.skipped) == (1, 2)
        assert edges_job.output_commit is not None
        edges = await _files(stack, "edges", edges_job.output_commit)
        assert set(edges) == {"/box.png", "/disc.png", "/wide.png"}
        assert _decoded(edges["/wide.png"]).shape == (120, 320)
        montage_job = await _job_on(stack, "montage", "edges", edges_job.output_commit)
        assert montage_job.output_commit is not None
        montage = await _files(stack, "montage", montage_job.output_commit)
        picture = _decoded(montage["/montage.png"], cv2.IMREAD_COLOR)
        assert (picture.shape[1], picture.shape[0]) == _montage_size(6)
