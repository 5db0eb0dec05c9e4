"""A model source may name a tag (``train@v1:/model.onnx``): the tagged commit is served and
stays served while the branch moves on."""

from __future__ import annotations

from tests.inference import models
from tests.inference.conftest import affine_request, commit_files, serving
from tusk.client import RepoClient
from tusk_repo.context import Context as RepoContext


async def test_a_tagged_model_stays_on_its_commit(repo_ctx: RepoContext, repos: RepoClient) -> None:
    tagged = await commit_files(repos, "train", {"/model.onnx": models.affine(scale=2.0)})
    await repos.create_tag("train", "v1", "master")
    async with serving(
        repo_ctx, repos, "pinned=train@v1:/model.onnx,live=train@master:/model.onnx"
    ) as running:
        newer = await commit_files(repos, "train", {"/model.onnx": models.affine(scale=5.0)})
        await running.wait_serving("live", newer.id)
        pinned = (await running.infer("pinned", affine_request([[1, 1, 1, 1]]))).json()
        live = (await running.infer("live", affine_request([[1, 1, 1, 1]]))).json()
    assert pinned["model_version"] == tagged.id
    assert pinned["outputs"][0]["data"][0] == 3.0
    assert live["model_version"] == newer.id
    assert live["outputs"][0]["data"][0] == 6.0
