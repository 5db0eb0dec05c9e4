"""Inference under hostile input: bounded tensors, outputs and models, strict JSON out,
compressed bodies in, and a Retry-After on every 503."""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib
from typing import Any

import httpx
from onnx import TensorProto, helper

from tests.inference import models
from tests.inference.conftest import affine_request, commit_files, serving
from tests.inference.test_oip import error_of
from tusk.client import RepoClient
from tusk_repo.context import Context as RepoContext


def strict_json(response: httpx.Response) -> Any:
    """The body as JSON, refusing NaN and Infinity (which JSON does not have)."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in a JSON answer")

    return json.loads(response.content, parse_constant=refuse)


def declared_huge() -> bytes:
    """A ~100-byte model declaring input FLOAT[1000000000, 1000]."""
    shape = [1_000_000_000, 1000]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "huge",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
    )
    return models._model(graph)


async def test_nan_and_infinity_are_written_as_null(
    repo_ctx: RepoContext, repos: RepoClient
) -> None:
    await commit_files(repos, "zoo", {"/affine.onnx": models.affine()})
    async with serving(repo_ctx, repos, "affine=zoo@master:/affine.onnx") as running:
        body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                            "data": [[None, 1, 2, 3]]}]}  # fmt: skip
        answer = await running.infer("affine", body)
        assert answer.status_code == 200, answer.text
        assert strict_json(answer)["outputs"][0]["data"] == [None, 3.0, 5.0, 7.0]
        overflow = affine_request([[3e38, -3e38, 1.0, 2.0]])  # 2x overflows FP32: ±inf
        answer = await running.infer("affine", overflow)
        assert strict_json(answer)["outputs"][0]["data"] == [None, None, 3.0, 5.0]


async def test_compressed_bodies_are_accepted_and_bounded(
    repo_ctx: RepoContext, repos: RepoClient
) -> None:
    await commit_files(repos, "zoo", {"/affine.onnx": models.affine()})
    async with serving(
        repo_ctx, repos, "affine=zoo@master:/affine.onnx", TUSK_INFERENCE_MAX_REQUEST_BYTES=4096
    ) as running:
        url = "/v2/models/affine/infer"
        plain = json.dumps(affine_request([[1.0, 2.0, 3.0, 4.0]])).encode()
        for encoding, body in (("gzip", gzip.compress(plain)), ("deflate", zlib.compress(plain))):
            answer = await running.http.post(
                url, content=body, headers={"Content-Encoding": encoding}
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["outputs"][0]["data"] == [3.0, 5.0, 7.0, 9.0]
        padded = json.dumps(affine_request([[1.0, 2.0, 3.0, 4.0]], id=" " * 100_000)).encode()
        bomb = gzip.compress(padded)
        assert len(bomb) < 4096
        error_of(
            await running.http.post(url, content=bomb, headers={"Content-Encoding": "gzip"}),
            413,
            "once decompressed",
        )
        error_of(
            await running.http.post(url, content=plain, headers={"Content-Encoding": "br"}),
            415,
            "Content-Encoding 'br' is not supported",
        )
        error_of(
            await running.http.post(
                url, content=b"\x1f\x8bnot", headers={"Content-Encoding": "gzip"}
            ),
            400,
            "not valid gzip",
        )


async def test_absurd_shapes_and_nesting_answer_400(
    repo_ctx: RepoContext, repos: RepoClient
) -> None:
    await commit_files(repos, "zoo", {"/id.onnx": models.identity("FP32", ("N", "M"))})
    async with serving(repo_ctx, repos, "id=zoo@master:/id.onnx") as running:
        empty_but_huge = {"inputs": [{"name": "input", "shape": [10**20, 0], "datatype": "FP32",
                                      "data": []}]}  # fmt: skip
        error_of(
            await running.infer("id", empty_but_huge), 400, "TUSK_INFERENCE_MAX_TENSOR_ELEMENTS"
        )
        deep = b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        error_of(await running.http.post("/v2/models/id/infer", content=deep), 400, "nested")


async def test_a_model_declaring_a_huge_input_is_refused_at_load(
    repo_ctx: RepoContext, repos: RepoClient
) -> None:
    good = await commit_files(repos, "zoo", {"/m.onnx": models.identity("FP32")})
    async with serving(repo_ctx, repos, "m=zoo@master:/m.onnx") as running:
        huge = await commit_files(repos, "zoo", {"/m.onnx": declared_huge()})
        failure = await running.wait_failed("m", huge.id)
        assert "TUSK_INFERENCE_MAX_TENSOR_ELEMENTS" in failure
        assert running.context.registry.slot("m").latest.commit == good.id  # the old one serves
    # A restart with the huge model at the head comes up (no crash loop) and says why.
    async with serving(repo_ctx, repos, "m=zoo@master:/m.onnx", wait=False) as restarted:
        failure = await restarted.wait_failed("m", huge.id)
        assert "TUSK_INFERENCE_MAX_TENSOR_ELEMENTS" in failure
        assert (await restarted.http.get("/healthz")).status_code == 200


async def test_model_file_size_is_bounded(repo_ctx: RepoContext, repos: RepoClient) -> None:
    model = await commit_files(repos, "zoo", {"/m.onnx": models.affine()})
    async with serving(
        repo_ctx, repos, "m=zoo@master:/m.onnx", wait=False, TUSK_INFERENCE_MAX_MODEL_BYTES=64
    ) as running:
        assert "TUSK_INFERENCE_MAX_MODEL_BYTES" in await running.wait_failed("m", model.id)


async def test_outputs_over_the_limit_answer_413(repo_ctx: RepoContext, repos: RepoClient) -> None:
    await commit_files(repos, "zoo", {"/id.onnx": models.identity("FP32")})
    async with serving(
        repo_ctx, repos, "id=zoo@master:/id.onnx", TUSK_INFERENCE_MAX_OUTPUT_BYTES=4096
    ) as running:
        rows = [[1.0, 2.0]] * 1000  # 8000 bytes out
        body = {"inputs": [{"name": "input", "shape": [1000, 2], "datatype": "FP32",
                            "data": rows}]}  # fmt: skip
        error_of(await running.infer("id", body), 413, "TUSK_INFERENCE_MAX_OUTPUT_BYTES")
        small = {"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP32",
                             "data": [[1.0, 2.0]]}]}  # fmt: skip
        assert (await running.infer("id", small)).status_code == 200


async def test_a_full_queue_says_when_to_retry(repo_ctx: RepoContext, repos: RepoClient) -> None:
    await commit_files(repos, "zoo", {"/slow.onnx": models.slow()})
    async with serving(
        repo_ctx,
        repos,
        "slow=zoo@master:/slow.onnx",
        TUSK_INFERENCE_BATCHING="always",
        TUSK_INFERENCE_QUEUE_LIMIT=1,
        TUSK_INFERENCE_MAX_BATCH_SIZE=1,
    ) as running:
        request = {"inputs": [{"name": "x", "shape": [1, 256], "datatype": "FP32",
                               "data": [[0.5] * 256]}]}  # fmt: skip
        answers = await asyncio.gather(*(running.infer("slow", request) for _ in range(30)))
        refused = [a for a in answers if a.status_code == 503]
        assert refused, [a.status_code for a in answers]
        assert all(a.json()["code"] == "queue_full" for a in refused)
        assert all(int(a.headers["retry-after"]) >= 1 for a in refused)
