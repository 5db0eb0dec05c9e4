"""Open Inference Protocol v2 conformance: every endpoint, every datatype, the error cases."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from tests.inference import models
from tests.inference.conftest import Serving, affine_request, commit_files, serving
from tests.inference.test_tensors import SAMPLES
from tusk.client import RepoClient
from tusk_repo.context import Context as RepoContext

pytestmark = pytest.mark.parametrize("repo_context", ["embedded"], indirect=True)

DATATYPES = list(SAMPLES)
MODELS = ",".join(
    [f"t_{d.lower()}=types@master:/{d}.onnx" for d in DATATYPES]
    + [
        "affine=zoo@master:/affine.onnx",
        "pair=zoo@master:/pair.onnx",
        "fixed=zoo@master:/fixed.onnx",
    ]
)


@pytest.fixture
async def oip(repo_ctx: RepoContext, repos: RepoClient) -> AsyncIterator[Serving]:
    await commit_files(repos, "types", {f"/{d}.onnx": models.identity(d) for d in DATATYPES})
    await commit_files(
        repos,
        "zoo",
        {
            "/affine.onnx": models.affine(),
            "/pair.onnx": models.two_outputs(),
            "/fixed.onnx": models.fixed_shape(),
        },
    )
    # A generous inline limit: the mode chosen from a timed warm-up must not depend on how busy
    # the machine is (test_batching covers the choice itself).
    async with serving(repo_ctx, repos, MODELS, TUSK_INFERENCE_INLINE_MAX_MS=50) as running:
        yield running


def error_of(response: Any, status: int, fragment: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body["error"], str)
    assert fragment in body["error"], body["error"]
    return str(body["error"])


async def test_health_and_server_metadata(oip: Serving) -> None:
    live = await oip.http.get("/v2/health/live")
    assert (live.status_code, live.json()) == (200, {"live": True})
    ready = await oip.http.get("/v2/health/ready")
    assert (ready.status_code, ready.json()) == (200, {"ready": True})
    server = (await oip.http.get("/v2")).json()
    assert server["name"] == "tusk-inference"
    assert "binary_tensor_data" in server["extensions"]
    assert isinstance(server["version"], str)


async def test_model_metadata(oip: Serving) -> None:
    slot = oip.context.registry.slot("affine")
    assert slot.latest is not None
    commit = slot.latest.commit
    for path in ("/v2/models/affine", f"/v2/models/affine/versions/{commit}"):
        metadata = (await oip.http.get(path)).json()
        assert metadata["name"] == "affine"
        assert metadata["versions"] == [commit]
        assert metadata["platform"] == "onnxruntime_onnx"
        assert metadata["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
        assert metadata["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}]
        parameters = metadata["parameters"]
        assert parameters["model_commit"] == commit
        assert parameters["source"] == "zoo@master:/affine.onnx"
        assert parameters["execution"] == "inline"
        assert parameters["state"] == "READY"
        # OIP parameters are flat: string, number or boolean values only.
        assert all(isinstance(v, str | int | float | bool) for v in parameters.values())
    fixed = (await oip.http.get("/v2/models/fixed")).json()
    assert fixed["inputs"][0]["shape"] == [1, 3]


async def test_model_and_version_readiness(oip: Serving) -> None:
    commit = oip.context.registry.resolve("affine").commit
    for path in ("/v2/models/affine/ready", f"/v2/models/affine/versions/{commit}/ready"):
        response = await oip.http.get(path)
        assert (response.status_code, response.json()) == (200, {"name": "affine", "ready": True})
    response = await oip.http.get("/v2/models/affine/versions/0123456789abcdef/ready")
    assert response.status_code == 400
    assert response.json()["ready"] is False
    error_of(await oip.http.get("/v2/models/nope/ready"), 404, "unknown model 'nope'")


async def test_repository_index(oip: Serving) -> None:
    entries = (await oip.http.post("/v2/repository/index")).json()
    assert {e["name"] for e in entries} == {f"t_{d.lower()}" for d in DATATYPES} | {
        "affine",
        "pair",
        "fixed",
    }
    assert all(e["state"] == "READY" and len(e["version"]) == 32 for e in entries)


@pytest.mark.parametrize("datatype", DATATYPES)
@pytest.mark.parametrize("layout", ["nested", "flat"])
async def test_infer_every_datatype(oip: Serving, datatype: str, layout: str) -> None:
    rows = SAMPLES[datatype]
    data = rows if layout == "nested" else [v for row in rows for v in row]
    request = {
        "id": f"req-{datatype}",
        "inputs": [{"name": "input", "shape": [2, 2], "datatype": datatype, "data": data}],
    }
    response = await oip.infer(f"t_{datatype.lower()}", request)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["model_name"] == f"t_{datatype.lower()}"
    assert body["id"] == f"req-{datatype}"
    [output] = body["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("output", datatype, [2, 2])
    flat = [v for row in rows for v in row]
    if datatype in ("FP16", "FP32"):
        assert np.allclose(
            output["data"],
            np.array(flat, dtype=datatype.replace("FP", "float").replace("float32", "float32")),
        )
    else:
        assert output["data"] == flat


@pytest.mark.parametrize("datatype", DATATYPES)
async def test_infer_every_datatype_in_binary(oip: Serving, datatype: str) -> None:
    """Triton's binary tensor extension, as tritonclient sends it by default."""
    rows = SAMPLES[datatype]
    dtype = {"BYTES": object, "FP16": np.float16}.get(
        datatype, datatype.lower().replace("fp32", "float32").replace("fp64", "float64")
    )
    if datatype == "BYTES":
        blob = b"".join(struct.pack("<I", len(v.encode())) + v.encode() for r in rows for v in r)
    else:
        blob = np.array(rows, dtype=dtype).tobytes()
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [2, 2],
                    "datatype": datatype,
                    "parameters": {"binary_data_size": len(blob)},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    response = await oip.http.post(
        f"/v2/models/t_{datatype.lower()}/infer",
        content=head + blob,
        headers={
            "Inference-Header-Content-Length": str(len(head)),
            "Content-Type": "application/octet-stream",
        },
    )
    assert response.status_code == 200, response.text
    length = int(response.headers["inference-header-content-length"])
    document = json.loads(response.content[:length])
    [output] = document["outputs"]
    assert output["parameters"]["binary_data_size"] == len(response.content) - length
    assert response.content[length:] == blob


async def test_outputs_selection_and_parameters(oip: Serving) -> None:
    request = {
        "id": "pick",
        "parameters": {"priority": 1, "custom": "ignored"},
        "inputs": [
            {"name": "a", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3, 4]]},
            {"name": "b", "shape": [2, 2], "datatype": "INT64", "data": [1, 1, 2, 2]},
        ],
        "outputs": [{"name": "neg"}],
    }
    body = (await oip.infer("pair", request)).json()
    assert [o["name"] for o in body["outputs"]] == ["neg"]
    assert body["outputs"][0]["data"] == [-1, -1, -2, -2]
    request["outputs"] = [{"name": "neg"}, {"name": "sum"}]
    body = (await oip.infer("pair", request)).json()
    assert [o["name"] for o in body["outputs"]] == ["neg", "sum"]
    assert body["outputs"][1]["data"] == [2.0, 3.0, 5.0, 6.0]
    del request["outputs"], request["id"]
    body = (await oip.infer("pair", request)).json()
    assert [o["name"] for o in body["outputs"]] == ["sum", "neg"]
    assert "id" not in body


async def test_infer_answers_with_lineage_and_version(oip: Serving) -> None:
    version = oip.context.registry.resolve("affine")
    body = (await oip.infer("affine", affine_request([[1, 2, 3, 4]]))).json()
    assert body["model_version"] == version.commit
    assert body["outputs"][0]["data"] == [3.0, 5.0, 7.0, 9.0]
    parameters = body["parameters"]
    assert parameters["model_commit"] == version.commit
    assert {"global_id", "data_commits", "model_repo", "model_path"} <= set(parameters)


async def test_errors(oip: Serving) -> None:
    ok = affine_request([[1, 2, 3, 4]])
    error_of(await oip.infer("nope", ok), 404, "unknown model 'nope'")
    error_of(
        await oip.infer("affine", ok, version="0123456789abcdef0123456789abcdef"),
        404,
        "version '0123456789abcdef0123456789abcdef' of model 'affine' is not loaded",
    )
    error_of(
        await oip.infer("affine", affine_request([[1, 2, 3]])),
        400,
        "input 'x' has shape [1, 3] but model 'affine' expects [-1, 4]",
    )
    wrong_type = affine_request([[1, 2, 3, 4]])
    wrong_type["inputs"][0]["datatype"] = "FP64"
    error_of(
        await oip.infer("affine", wrong_type),
        400,
        "has datatype FP64 but model 'affine' expects FP32",
    )
    missing = {"inputs": [{"name": "a", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}
    error_of(await oip.infer("pair", missing), 400, "missing input(s) 'b'")
    error_of(await oip.infer("affine", {"inputs": []}), 400, "non-empty list")
    response = await oip.http.post("/v2/models/affine/infer", content=b"{nope")
    error_of(response, 400, "not valid JSON")
    error_of(await oip.http.get("/v2/models/nope"), 404, "unknown model 'nope'")
    error_of(await oip.http.get("/v2/models/affine/versions/abc"), 404, "not loaded")
    error_of(
        await oip.infer(
            "fixed",
            {
                "inputs": [
                    {"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}
                ]
            },
        ),
        400,
        "expects [1, 3]",
    )


async def test_too_large_requests_are_refused(repo_ctx: RepoContext, repos: RepoClient) -> None:
    await commit_files(repos, "zoo", {"/affine.onnx": models.affine()})
    async with serving(
        repo_ctx, repos, "affine=zoo@master:/affine.onnx", TUSK_INFERENCE_MAX_REQUEST_BYTES=2048
    ) as small:
        big = affine_request([[1.0, 2.0, 3.0, 4.0]] * 200)
        error_of(await small.infer("affine", big), 413, "TUSK_INFERENCE_MAX_REQUEST_BYTES")
        assert (await small.infer("affine", affine_request([[1, 2, 3, 4]]))).status_code == 200


async def test_not_loaded_yet(repo_ctx: RepoContext, repos: RepoClient) -> None:
    async with serving(repo_ctx, repos, "later=nothing@master:/m.onnx", wait=False) as empty:
        ready = await empty.http.get("/v2/health/ready")
        assert ready.status_code == 400
        assert "no version loaded" in ready.json()["error"]
        assert (await empty.http.get("/v2/models/later/ready")).status_code == 400
        metadata = (await empty.http.get("/v2/models/later")).json()
        assert metadata["versions"] == []
        assert metadata["inputs"] == []
        assert metadata["parameters"]["state"] in ("UNAVAILABLE", "LOADING")
        error_of(
            await empty.infer("later", affine_request([[1, 2, 3, 4]])),
            503,
            "has no version loaded yet",
        )
        # No version anywhere: nothing this replica could do better, so it takes traffic.
        await asyncio.wait_for(empty.context.service.wait_settled(), 20)
        assert (await empty.http.get("/readyz")).status_code == 200
        # The model arrives: it is loaded from the event, without a restart.
        commit = await commit_files(repos, "nothing", {"/m.onnx": models.affine()})
        await empty.wait_serving("later", commit.id)
        assert (await empty.http.get("/v2/health/ready")).status_code == 200


async def test_metrics(oip: Serving) -> None:
    await oip.infer("affine", affine_request([[1, 2, 3, 4]]))
    await oip.infer("affine", affine_request([[1, 2, 3]]))
    text = (await oip.http.get("/metrics")).text
    assert 'tusk_inference_request_duration_seconds_count{model="affine"}' in text
    assert 'tusk_inference_request_errors_total{model="affine",status="400"} 1.0' in text
    assert 'tusk_inference_loaded_versions{model="affine"} 1.0' in text
    assert "tusk_inference_reload_failures_total" in text
    assert "tusk_inference_queue_seconds" in text
    assert "tusk_inference_batch_rows" in text


async def test_probes_need_no_token_but_inference_and_metrics_do(
    repo_ctx: RepoContext, repos: RepoClient
) -> None:
    await commit_files(repos, "zoo", {"/affine.onnx": models.affine()})
    async with serving(
        repo_ctx, repos, "affine=zoo@master:/affine.onnx", api_tokens="s3cret"
    ) as secured:
        for path in ("/v2/health/live", "/v2/health/ready"):
            assert (await secured.http.get(path)).status_code == 200, path
        for path in ("/metrics", "/v2", "/v2/models/affine", "//metrics"):
            assert (await secured.http.get(path)).status_code == 401, path
        assert (await secured.infer("affine", affine_request([[1, 2, 3, 4]]))).status_code == 401
        response = await secured.http.post(
            "/v2/models/affine/infer",
            json=affine_request([[1, 2, 3, 4]]),
            headers={"Authorization": "Bearer s3cret"},
        )
        assert response.status_code == 200


async def test_request_id_header_is_echoed(oip: Serving) -> None:
    response = await oip.http.post(
        "/v2/models/affine/infer",
        json=affine_request([[1, 2, 3, 4]]),
        headers={"X-Request-ID": "trace-me"},
    )
    assert response.headers["x-request-id"] == "trace-me"
