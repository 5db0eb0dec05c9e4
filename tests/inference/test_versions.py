"""New versions from the repos: hot swaps under load, failures that keep the old version,
pinned and evicted versions, rollbacks, and the lineage each answer carries.

These run on both repo-service backends (SQLite + directory, PostgreSQL + S3)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from tests.inference import models
from tests.inference.conftest import affine_request, commit_files, http_server, serving
from tusk.client import RepoClient
from tusk_repo.context import Context as RepoContext

MODEL = "credit=train@master:/model.onnx"


def scale_of(body: dict[str, Any]) -> float:
    """The affine models here have bias 1 and a scale per version: x = 1 gives scale + 1."""
    return float(body["outputs"][0]["data"][0]) - 1.0


async def test_hot_swap_under_concurrent_requests_drops_nothing(
    repo_ctx: RepoContext, repos: RepoClient
) -> None:
    first = await commit_files(repos, "train", {"/model.onnx": models.affine(scale=1.0)})
    scale_by_commit = {first.id: 1.0}
    async with serving(repo_ctx, repos, MODEL) as running:
        stop = asyncio.Event()
        answers: list[httpx.Response] = []

        async def client() -> None:
            while not stop.is_set():
                answers.append(await running.infer("credit", affine_request([[1, 1, 1, 1]])))
                await asyncio.sleep(0.001)  # leave the loop to the repo service now and then

        clients = [asyncio.create_task(client()) for _ in range(8)]
        try:
            for scale in (2.0, 3.0, 4.0, 5.0, 6.0):
                commit = await commit_files(
                    repos, "train", {"/model.onnx": models.affine(scale=scale)}
                )
                scale_by_commit[commit.id] = scale
                await running.wait_serving("credit", commit.id)
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await asyncio.gather(*clients)
    assert len(answers) > 100
    assert [a.status_code for a in answers if a.status_code != 200] == []
    seen = {}
    for answer in answers:
        body = answer.json()
        # Every answer is consistent: the outputs are those of the version it names.
        assert scale_of(body) == scale_by_commit[body["model_version"]]
        seen[body["model_version"]] = True
    assert len(seen) >= 5  # the clients saw the versions change


async def test_a_request_in_flight_finishes_on_its_version(
    repo_ctx: RepoContext, repos: RepoClient
) -> None:
    """The version is taken when the request arrives: one whose body is still coming in when
    the swap happens (and its version is evicted) is answered by that version."""
    old = await commit_files(repos, "train", {"/model.onnx": models.affine(scale=1.0)})
    async with (
        serving(repo_ctx, repos, MODEL, TUSK_INFERENCE_MAX_VERSIONS=1) as running,
        http_server(running.context) as address,
    ):
        host, port = address.split(":")
        body = json.dumps(affine_request([[1, 1, 1, 1]])).encode()
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"POST /v2/models/credit/infer HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body[:10]
        )
        await writer.drain()
        await asyncio.sleep(0.2)  # the request is in: its version is resolved
        new = await commit_files(repos, "train", {"/model.onnx": models.affine(scale=7.0)})
        await running.wait_serving("credit", new.id)
        assert not running.context.registry.slot("credit").has(old.id)  # evicted meanwhile
        writer.write(body[10:])
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(
            next(
                line.split(b":")[1]
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
        )
        answer = json.loads(await reader.readexactly(length))
        writer.close()
        assert head.startswith(b"HTTP/1.1 200")
        assert (answer["model_version"], scale_of(answer)) == (old.id, 1.0)
        after = (await running.infer("credit", affine_request([[1, 1, 1, 1]]))).json()
        assert (after["model_version"], scale_of(after)) == (new.id, 7.0)


async def test_a_corrupt_model_keeps_the_old_version_serving(
    repo_ctx: RepoContext, repos: RepoClient
) -> None:
    good = await commit_files(repos, "train", {"/model.onnx": models.affine(scale=2.0)})
    async with serving(repo_ctx, repos, MODEL) as running:
        corrupt = await commit_files(repos, "train", {"/model.onnx": models.CORRUPT})
        error = await running.wait_failed("credit", corrupt.id)
        assert "onnxruntime cannot load the model" in error
        answer = await running.infer("credit", affine_request([[1, 1, 1, 1]]))
        assert answer.status_code == 200
        assert answer.json()["model_version"] == good.id
        metadata = (await running.http.get("/v2/models/credit")).json()
        assert metadata["versions"] == [good.id]
        assert metadata["parameters"]["last_error_commit"] == corrupt.id
        assert "cannot load" in metadata["parameters"]["last_error"]
        assert (await running.http.get("/v2/health/ready")).status_code == 200
        metrics = (await running.http.get("/metrics")).text
        assert 'tusk_inference_reload_failures_total{model="credit"} 1.0' in metrics

        # The next good commit is served, and the error is cleared.
        fixed = await commit_files(repos, "train", {"/model.onnx": models.affine(scale=3.0)})
        await running.wait_serving("credit", fixed.id)
        metadata = (await running.http.get("/v2/models/credit")).json()
        assert "last_error" not in metadata["parameters"]


async def test_a_model_file_missing_from_the_commit_is_a_failed_load(
    repo_ctx: RepoContext, repos: RepoClient
) -> None:
    good = await commit_files(repos, "train", {"/model.onnx": models.affine()})
    async with serving(repo_ctx, repos, MODEL) as running:
        commit = await repos.start_commit("train")
        await repos.delete_file("train", commit.id, "/model.onnx")
        empty = await repos.finish_commit("train", commit.id)
        error = await running.wait_failed("credit", empty.id)
        assert "has no file /model.onnx" in error
        assert running.context.registry.resolve("credit").commit == good.id


async def test_failed_commits_are_never_loaded(repo_ctx: RepoContext, repos: RepoClient) -> None:
    good = await commit_files(repos, "train", {"/model.onnx": models.affine(scale=2.0)})
    await commit_files(
        repos, "train", {"/model.onnx": models.affine(scale=9.0)}, error="the training job failed"
    )
    # At start-up the head is a failed commit: the last good one is served instead.
    async with serving(repo_ctx, repos, MODEL) as running:
        assert running.context.registry.resolve("credit").commit == good.id
        failed = await commit_files(
            repos, "train", {"/model.onnx": models.affine(scale=9.0)}, error="failed again"
        )
        after = await commit_files(repos, "train", {"/model.onnx": models.affine(scale=4.0)})
        await running.wait_serving("credit", after.id)
        slot = running.context.registry.slot("credit")
        assert not slot.has(failed.id)
        assert slot.last_failure is None  # a failed commit is skipped, not a failed load
        metrics = (await running.http.get("/metrics")).text
        assert 'tusk_inference_reloads_total{model="credit"} 2.0' in metrics


async def test_versions_are_pinnable_and_evicted_least_recently_used_first(
    repo_ctx: RepoContext, repos: RepoClient
) -> None:
    v1 = await commit_files(repos, "train", {"/model.onnx": models.affine(scale=1.0)})
    async with serving(repo_ctx, repos, MODEL, TUSK_INFERENCE_MAX_VERSIONS=3) as running:
        v2 = await commit_files(repos, "train", {"/model.onnx": models.affine(scale=2.0)})
        await running.wait_serving("credit", v2.id)
        v3 = await commit_files(repos, "train", {"/model.onnx": models.affine(scale=3.0)})
        await running.wait_serving("credit", v3.id)
        metadata = (await running.http.get("/v2/models/credit")).json()
        assert metadata["versions"] == [v3.id, v2.id, v1.id]  # latest, then most recent use

        pinned = await running.infer("credit", affine_request([[1, 1, 1, 1]]), version=v1.id)
        assert (pinned.json()["model_version"], scale_of(pinned.json())) == (v1.id, 1.0)
        by_prefix = await running.infer("credit", affine_request([[1, 1, 1, 1]]), version=v1.id[:8])
        assert by_prefix.json()["model_version"] == v1.id
        latest = (await running.infer("credit", affine_request([[1, 1, 1, 1]]))).json()
        assert (latest["model_version"], scale_of(latest)) == (v3.id, 3.0)

        # v4 makes room by evicting v2: v3 served until now and v1 was pinned since.
        v4 = await commit_files(repos, "train", {"/model.onnx": models.affine(scale=4.0)})
        await running.wait_serving("credit", v4.id)
        metadata = (await running.http.get("/v2/models/credit")).json()
        assert metadata["versions"] == [v4.id, v3.id, v1.id]
        gone = await running.infer("credit", affine_request([[1, 1, 1, 1]]), version=v2.id)
        assert gone.status_code == 404
        assert "not loaded" in gone.json()["error"]
        assert v1.id in gone.json()["error"]
        ready = await running.http.get(f"/v2/models/credit/versions/{v2.id}/ready")
        assert ready.status_code == 400
        text = (await running.http.get("/metrics")).text
        assert 'tusk_inference_loaded_versions{model="credit"} 3.0' in text


async def test_moving_the_branch_back_serves_the_old_version_again(
    repo_ctx: RepoContext, repos: RepoClient
) -> None:
    v1 = await commit_files(repos, "train", {"/model.onnx": models.affine(scale=1.0)})
    async with serving(repo_ctx, repos, MODEL, TUSK_INFERENCE_MAX_VERSIONS=1) as running:
        v2 = await commit_files(repos, "train", {"/model.onnx": models.affine(scale=2.0)})
        await running.wait_serving("credit", v2.id)
        await repos.move_branch("train", "master", v1.id)  # a rollback
        await running.wait_serving("credit", v1.id)
        answer = (await running.infer("credit", affine_request([[1, 1, 1, 1]]))).json()
        assert (answer["model_version"], scale_of(answer)) == (v1.id, 1.0)


async def test_an_unchanged_model_file_shares_its_session(
    repo_ctx: RepoContext, repos: RepoClient
) -> None:
    model = models.affine(scale=2.0)
    v1 = await commit_files(repos, "train", {"/model.onnx": model, "/metrics.json": b"{}"})
    async with serving(repo_ctx, repos, MODEL) as running:
        v2 = await commit_files(repos, "train", {"/model.onnx": model, "/metrics.json": b"[]"})
        await running.wait_serving("credit", v2.id)
        slot = running.context.registry.slot("credit")
        assert slot.versions[v1.id].runner is slot.versions[v2.id].runner
        answer = (await running.infer("credit", affine_request([[1, 1, 1, 1]]))).json()
        assert answer["model_version"] == v2.id


async def test_lineage_walks_up_to_the_raw_data(repo_ctx: RepoContext, repos: RepoClient) -> None:
    raw = await commit_files(repos, "raw", {"/day-001.csv": b"a,b\n1,2\n"})
    customers = await commit_files(repos, "customers", {"/c.csv": b"x\n"})
    features = await commit_files(repos, "preprocess", {"/train.csv": b"1\n"}, provenance=[raw])
    trained = await commit_files(
        repos, "train", {"/model.onnx": models.affine()}, provenance=[features]
    )
    async with serving(repo_ctx, repos, MODEL) as running:
        answer = (await running.infer("credit", affine_request([[1, 1, 1, 1]]))).json()
        lineage = answer["parameters"]
        assert lineage["model_commit"] == trained.id == answer["model_version"]
        assert lineage["global_id"] == raw.global_id == trained.global_id
        assert lineage["data_commits"] == f"preprocess@{features.id},raw@{raw.id}"
        assert (lineage["model_repo"], lineage["model_branch"], lineage["model_path"]) == (
            "train",
            "master",
            "/model.onnx",
        )
        assert customers.id not in lineage["data_commits"]
        metadata = (await running.http.get("/v2/models/credit")).json()
        assert metadata["parameters"]["data_commits"] == lineage["data_commits"]


async def test_two_models_on_one_branch_and_one_on_another(
    repo_ctx: RepoContext, repos: RepoClient
) -> None:
    main = await commit_files(
        repos, "train", {"/a.onnx": models.affine(scale=1.0), "/b.onnx": models.affine(scale=2.0)}
    )
    dev = await commit_files(repos, "train", {"/a.onnx": models.affine(scale=3.0)}, branch="dev")
    specs = "a=train@master:/a.onnx,b=train@master:/b.onnx,a_dev=train@dev:/a.onnx"
    async with serving(repo_ctx, repos, specs) as running:
        registry = running.context.registry
        assert registry.resolve("a").commit == registry.resolve("b").commit == main.id
        assert registry.resolve("a_dev").commit == dev.id
        newer = await commit_files(
            repos, "train", {"/a.onnx": models.affine(scale=5.0)}, branch="dev"
        )
        await running.wait_serving("a_dev", newer.id)
        assert registry.resolve("a").commit == main.id  # master did not move
