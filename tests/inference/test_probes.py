"""Probes as Kubernetes and compose use them: liveness never depends on a model; a replica is
ready for its Service once it has done what it can for every model (per-model readiness, as
KServe), while OIP's `/v2/health/ready` still says whether every model serves a version."""

from __future__ import annotations

import asyncio

import pytest

from tests.inference import models
from tests.inference.conftest import WAIT, Serving, commit_files, serving
from tusk.client import RepoClient
from tusk_repo.context import Context as RepoContext

pytestmark = pytest.mark.parametrize("repo_context", ["embedded"], indirect=True)


async def settled(running: Serving) -> None:
    await asyncio.wait_for(running.context.service.wait_settled(), WAIT)


async def test_no_model_yet_is_live_and_ready(repo_ctx: RepoContext, repos: RepoClient) -> None:
    async with serving(repo_ctx, repos, "later=nothing@master:/m.onnx", wait=False) as empty:
        for path in ("/v2/health/live", "/healthz"):
            assert (await empty.http.get(path)).status_code == 200, path
        await settled(empty)
        ready = await empty.http.get("/readyz")
        assert (ready.status_code, ready.json()["models"]) == (200, {"later": False})
        # OIP's server readiness and the model's own still say it has no version.
        assert (await empty.http.get("/v2/health/ready")).status_code == 400
        assert (await empty.http.get("/v2/models/later/ready")).status_code == 400


async def test_one_of_three_models_missing(repo_ctx: RepoContext, repos: RepoClient) -> None:
    await commit_files(repos, "zoo", {"/a.onnx": models.affine(), "/b.onnx": models.affine(3.0)})
    specs = "a=zoo@master:/a.onnx,b=zoo@master:/b.onnx,c=absent@master:/c.onnx"
    async with serving(repo_ctx, repos, specs, wait=False) as running:
        await settled(running)
        ready = await running.http.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["models"] == {"a": True, "b": True, "c": False}
        for name, status in (("a", 200), ("b", 200), ("c", 400)):
            answer = await running.http.get(f"/v2/models/{name}/ready")
            assert answer.status_code == status, (name, answer.text)


async def test_a_failing_model_keeps_the_replica_live_and_ready(
    repo_ctx: RepoContext, repos: RepoClient
) -> None:
    commit = await commit_files(repos, "bad", {"/m.onnx": b"not an onnx model"})
    async with serving(repo_ctx, repos, "broken=bad@master:/m.onnx", wait=False) as running:
        error = await running.wait_failed("broken", commit.id)
        assert error
        await settled(running)
        assert (await running.http.get("/v2/health/live")).status_code == 200
        assert (await running.http.get("/readyz")).status_code == 200
        model = await running.http.get("/v2/models/broken/ready")
        assert model.status_code == 400
        assert "last load failed" in model.json()["error"]


async def test_not_ready_while_the_first_version_loads(
    repo_ctx: RepoContext, repos: RepoClient
) -> None:
    """A replica joins its Service only once it serves what the others serve."""
    async with serving(repo_ctx, repos, "a=zoo2@master:/a.onnx", wait=False) as running:
        slot = running.context.registry.slot("a")
        slot.checked = True
        slot.queued = "0" * 32  # as between a commit event and the start of its load
        answer = await running.http.get("/readyz")
        assert answer.status_code == 503
        assert "no version loaded yet" in answer.json()["error"]
