"""Unmodified clients against a real uvicorn server: tritonclient's HTTP client (binary
tensors by default, JSON on request) and the ``tusk model`` / ``tusk predict`` commands."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from tests.inference import models
from tests.inference.conftest import Serving, commit_files, http_server, serving
from tusk.client import RepoClient
from tusk_cli import models as model_cli
from tusk_repo.context import Context as RepoContext

pytestmark = pytest.mark.parametrize("repo_context", ["embedded"], indirect=True)

SPECS = (
    "affine=zoo@master:/affine.onnx,pair=zoo@master:/pair.onnx,"
    "words=zoo@master:/words.onnx,half=zoo@master:/half.onnx"
)


@pytest.fixture
async def server(repo_ctx: RepoContext, repos: RepoClient) -> AsyncIterator[tuple[str, Serving]]:
    raw = await commit_files(repos, "raw", {"/day.csv": b"a\n"})
    await commit_files(
        repos,
        "zoo",
        {
            "/affine.onnx": models.affine(),
            "/pair.onnx": models.two_outputs(),
            "/words.onnx": models.identity("BYTES"),
            "/half.onnx": models.identity("FP16"),
        },
        provenance=[raw],
    )
    async with serving(repo_ctx, repos, SPECS) as running, http_server(running.context) as url:
        yield url, running


def triton_session(url: str) -> dict[str, Any]:
    """Everything tritonclient does here, in one (blocking) function run in a thread."""
    import tritonclient.http as triton

    client = triton.InferenceServerClient(url)
    found: dict[str, Any] = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "server": client.get_server_metadata(),
        "model_ready": client.is_model_ready("affine"),
        "missing_ready": client.is_model_ready("nope"),
        "metadata": client.get_model_metadata("affine"),
        "index": client.get_model_repository_index(),
    }
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    for binary in (True, False):
        tensor = triton.InferInput("x", [2, 4], "FP32")
        tensor.set_data_from_numpy(x, binary_data=binary)
        result = client.infer(
            "affine",
            [tensor],
            request_id=f"r-{binary}",
            outputs=[triton.InferRequestedOutput("y", binary_data=binary)],
        )
        found[f"y_{binary}"] = result.as_numpy("y")
        found[f"response_{binary}"] = result.get_response()
    # Defaults: binary in, binary out, no outputs named.
    tensor = triton.InferInput("x", [2, 4], "FP32")
    tensor.set_data_from_numpy(x)
    found["y_default"] = client.infer("affine", [tensor]).as_numpy("y")
    version = found["metadata"]["versions"][0]
    found["y_pinned"] = client.infer("affine", [tensor], model_version=version).as_numpy("y")

    a = triton.InferInput("a", [1, 2], "FP32")
    a.set_data_from_numpy(np.array([[0.5, 1.5]], dtype=np.float32))
    b = triton.InferInput("b", [1, 2], "INT64")
    b.set_data_from_numpy(np.array([[2, 3]], dtype=np.int64), binary_data=False)
    pair = client.infer("pair", [a, b])
    found["sum"], found["neg"] = pair.as_numpy("sum"), pair.as_numpy("neg")

    words = triton.InferInput("input", [2, 2], "BYTES")
    words.set_data_from_numpy(np.array([[b"a", b"bc"], [b"", "d\u00e9".encode()]], dtype=object))
    found["words"] = client.infer("words", [words]).as_numpy("output")

    half = triton.InferInput("input", [1, 2], "FP16")
    half.set_data_from_numpy(np.array([[0.5, -2.0]], dtype=np.float16))
    found["half"] = client.infer("half", [half]).as_numpy("output")

    bad = triton.InferInput("x", [1, 3], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
    try:
        client.infer("affine", [bad])
    except triton.InferenceServerException as e:
        found["error"] = (e.status(), e.message())
    client.close()
    return found


async def test_tritonclient_works_unmodified(server: tuple[str, Serving]) -> None:
    url, running = server
    found = await asyncio.to_thread(triton_session, url)
    assert found["live"]
    assert found["ready"]
    assert found["model_ready"]
    assert not found["missing_ready"]
    assert found["server"]["name"] == "tusk-inference"
    assert found["metadata"]["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    assert {e["name"] for e in found["index"]} == {"affine", "pair", "words", "half"}
    expected = np.arange(8, dtype=np.float32).reshape(2, 4) * 2 + 1
    for key in ("y_True", "y_False", "y_default", "y_pinned"):
        assert np.array_equal(found[key], expected), key
    assert found["response_False"]["id"] == "r-False"
    lineage = found["response_True"]["parameters"]
    assert lineage["model_commit"] == running.context.registry.resolve("affine").commit
    assert lineage["data_commits"].startswith("raw@")
    assert found["sum"].tolist() == [[2.5, 4.5]]
    assert found["neg"].tolist() == [[-2, -3]]
    assert found["words"].tolist() == [[b"a", b"bc"], [b"", "d\u00e9".encode()]]
    assert found["half"].dtype == np.float16
    assert found["half"].tolist() == [[0.5, -2.0]]
    status, message = found["error"]
    assert status == "400"
    assert "expects [-1, 4]" in message


def cli(url: str, *args: str, stdin: str | None = None) -> Any:
    app = typer.Typer()
    app.add_typer(model_cli.app, name="model")
    app.command()(model_cli.predict)
    runner = CliRunner()
    return runner.invoke(
        app, list(args), input=stdin, env={"TUSK_INFERENCE_URL": f"http://{url}", "TUSK_TOKEN": ""}
    )


async def test_model_list_and_inspect(server: tuple[str, Serving]) -> None:
    url, running = server
    commit = running.context.registry.resolve("affine").commit
    listed = await asyncio.to_thread(cli, url, "model", "list")
    assert listed.exit_code == 0, listed.output
    assert "affine" in listed.output
    assert "zoo@master:/affine.onnx" in listed.output
    assert commit in listed.output
    shown = await asyncio.to_thread(cli, url, "model", "inspect", "affine")
    assert shown.exit_code == 0, shown.output
    assert "x FP32 [-1, 4]" in shown.output
    assert "data_commits" in shown.output
    as_json = await asyncio.to_thread(cli, url, "model", "inspect", "affine", "--json")
    assert json.loads(as_json.stdout)["versions"] == [commit]
    missing = await asyncio.to_thread(cli, url, "model", "inspect", "nope")
    assert missing.exit_code == 1
    assert "unknown model 'nope'" in missing.output


async def test_predict_from_json_and_csv(server: tuple[str, Serving], tmp_path: Path) -> None:
    url, _ = server
    simple = await asyncio.to_thread(
        cli, url, "predict", "affine", "--json", '{"x": [[1, 2, 3, 4], [0, 0, 0, 0]]}'
    )
    assert simple.exit_code == 0, simple.output
    assert "[3, 5, 7, 9]" in simple.output
    assert "[1, 1, 1, 1]" in simple.output
    assert "trained on: raw@" in simple.output

    one_row = await asyncio.to_thread(
        cli, url, "predict", "affine", "--json", '{"x": [1, 1, 1, 1]}', "--raw"
    )
    assert one_row.exit_code == 0, one_row.output
    answer = json.loads(one_row.stdout.splitlines()[0])
    assert answer["outputs"][0]["data"] == [3.0] * 4

    request = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [2] * 4}]}
    raw = await asyncio.to_thread(
        cli, url, "predict", "affine", "--json", "-", "--raw", stdin=json.dumps(request)
    )
    assert json.loads(raw.stdout.splitlines()[0])["outputs"][0]["data"] == [5.0] * 4

    table = tmp_path / "rows.csv"
    table.write_text("f1,f2,f3,f4\n1,2,3,4\n0.5,0.5,0.5,0.5\n")
    scored = await asyncio.to_thread(cli, url, "predict", "affine", "--csv", str(table))
    assert scored.exit_code == 0, scored.output
    assert "[3, 5, 7, 9]" in scored.output
    assert "[2, 2, 2, 2]" in scored.output

    pairs = tmp_path / "pairs.csv"
    pairs.write_text("a,b\n1.5,2\n")
    wrong = await asyncio.to_thread(cli, url, "predict", "pair", "--csv", str(pairs))
    assert wrong.exit_code == 1  # pair takes [N, 2] tensors, not one column each
    bad = tmp_path / "bad.csv"
    bad.write_text("f1,f2,f3\n1,2,3\n")
    refused = await asyncio.to_thread(cli, url, "predict", "affine", "--csv", str(bad))
    assert refused.exit_code == 1
    assert "takes 4 features" in refused.output
    unknown = await asyncio.to_thread(cli, url, "predict", "affine", "--json", '{"z": [1]}')
    assert unknown.exit_code == 1
    assert "has no input 'z'" in unknown.output
    neither = await asyncio.to_thread(cli, url, "predict", "affine")
    assert neither.exit_code == 2
