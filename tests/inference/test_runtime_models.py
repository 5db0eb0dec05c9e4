"""Models added and removed at runtime (/v1/models), and kept across a restart."""

from __future__ import annotations

from pathlib import Path

from tests.inference import models
from tests.inference.conftest import affine_request, commit_files, serving
from tusk.client import RepoClient
from tusk_repo.context import Context as RepoContext


async def test_added_models_serve_at_once_and_after_a_restart(
    repo_ctx: RepoContext, repos: RepoClient, tmp_path: Path
) -> None:
    state = tmp_path / "models.json"
    first = await commit_files(repos, "train", {"/model.onnx": models.affine(2.0, 1.0)})
    await commit_files(repos, "fixed", {"/model.onnx": models.affine(1.0, 0.0)})
    async with serving(repo_ctx, repos, "fixed=fixed@master:/model.onnx",
                       TUSK_INFERENCE_MODELS_STATE=state) as s:
        added = await s.http.put("/v1/models/credit", json={"source": "train@master:/model.onnx"})
        assert added.status_code == 201, added.text
        assert added.json() == {"name": "credit", "source": "train@master:/model.onnx",
                                "batching": None, "origin": "runtime"}
        await s.wait_serving("credit", first.id)
        answer = await s.infer("credit", affine_request([[1, 1, 1, 1]]))
        assert answer.json()["outputs"][0]["data"] == [3, 3, 3, 3]
        again = await s.http.put("/v1/models/credit", json={"source": "train@master:/model.onnx"})
        assert again.status_code == 200  # the same source again: nothing changes
        listed = (await s.http.get("/v1/models")).json()
        assert [(m["name"], m["origin"]) for m in listed] == [("fixed", "settings"),
                                                              ("credit", "runtime")]
        # A new commit of the branch is served without anything else said.
        second = await commit_files(repos, "train", {"/model.onnx": models.affine(3.0, 0.0)})
        await s.wait_serving("credit", second.id)

    async with serving(repo_ctx, repos, "fixed=fixed@master:/model.onnx",
                       TUSK_INFERENCE_MODELS_STATE=state) as restarted:
        assert set(restarted.context.registry.slots) == {"fixed", "credit"}
        answer = await restarted.infer("credit", affine_request([[1, 1, 1, 1]]))
        assert answer.json()["outputs"][0]["data"] == [3, 3, 3, 3]
        assert (await restarted.http.delete("/v1/models/credit")).status_code == 204
        gone = await restarted.infer("credit", affine_request([[1, 1, 1, 1]]))
        assert gone.status_code == 404

    async with serving(repo_ctx, repos, "fixed=fixed@master:/model.onnx",
                       TUSK_INFERENCE_MODELS_STATE=state) as after_removal:
        assert set(after_removal.context.registry.slots) == {"fixed"}


async def test_bad_requests_name_what_is_wrong(
    repo_ctx: RepoContext, repos: RepoClient, tmp_path: Path
) -> None:
    await commit_files(repos, "fixed", {"/model.onnx": models.affine()})
    async with serving(repo_ctx, repos, "fixed=fixed@master:/model.onnx",
                       TUSK_INFERENCE_MODELS_STATE=tmp_path / "m.json") as s:
        no_file = await s.http.put("/v1/models/m", json={"source": "train@master"})
        assert no_file.status_code == 400
        assert "names no file" in no_file.json()["error"]
        by_commit = await s.http.put("/v1/models/m", json={"source": f"train@{'a' * 32}:/m.onnx"})
        assert by_commit.status_code == 400
        assert "must name a branch" in by_commit.json()["error"]
        settings_model = await s.http.put("/v1/models/fixed", json={"source": "x@master:/m"})
        assert settings_model.status_code == 409
        assert "TUSK_MODELS" in settings_model.json()["error"]
        assert (await s.http.delete("/v1/models/fixed")).status_code == 409
        unknown = await s.http.delete("/v1/models/nope")
        assert unknown.status_code == 404
        assert "unknown model 'nope'" in unknown.json()["error"]
        typo = await s.http.put("/v1/models/m", json={"sauce": "x@master:/m"})
        assert typo.status_code == 400
        assert not state_file_models(tmp_path / "m.json")


def state_file_models(path: Path) -> list[str]:
    import json

    return list(json.loads(path.read_text())["models"]) if path.exists() else []
