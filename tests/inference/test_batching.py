"""How models run: inline, in a thread, or micro-batched — chosen from the warm-up timing or
forced by the settings — and the batcher's own rules."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest

from tests.inference import models
from tests.inference.conftest import commit_files, serving
from tusk.client import RepoClient
from tusk_inference.domain.batching import Batcher, QueueFull
from tusk_inference.domain.engine import EngineOptions, choose_mode
from tusk_repo.context import Context as RepoContext

Array = np.ndarray[Any, Any]


class Recorder:
    def __init__(self) -> None:
        self.batches: list[tuple[int, int]] = []
        self.waits: list[float] = []

    def batch(self, rows: int, requests: int) -> None:
        self.batches.append((rows, requests))

    def queued(self, seconds: float) -> None:
        self.waits.append(seconds)


def doubling(delay: float = 0.005) -> tuple[Any, list[int]]:
    """A slow model: y = 2x, and the number of rows of each run."""
    runs: list[int] = []

    def run(feeds: dict[str, Array]) -> dict[str, Array]:
        runs.append(len(feeds["x"]))
        time.sleep(delay)
        if (feeds["x"] < 0).any():
            raise ValueError("negative input")
        return {"y": feeds["x"] * 2}

    return run, runs


def rows(values: list[float]) -> dict[str, Array]:
    return {"x": np.array([[v] for v in values], dtype=np.float32)}


async def test_concurrent_requests_share_runs_and_get_their_own_rows() -> None:
    run, runs = doubling()
    recorder = Recorder()
    batcher = Batcher(run, max_rows=64, max_delay=0.002, queue_limit=100, observer=recorder)
    requests = [[float(i), float(i) + 0.5] for i in range(40)]
    results = await asyncio.gather(*(batcher.submit(rows(r), 2) for r in requests))
    for request, result in zip(requests, results, strict=True):
        assert result["y"][:, 0].tolist() == [2 * v for v in request]
    assert sum(runs) == 80
    assert len(runs) < 10  # batched: far fewer runs than requests
    assert max(requests for _, requests in recorder.batches) > 1
    assert all(r <= 64 for r in runs)
    assert len(recorder.waits) == 40


async def test_a_lone_request_runs_at_once() -> None:
    run, runs = doubling(0)
    batcher = Batcher(run, max_rows=64, max_delay=0.5, queue_limit=10)
    started = time.perf_counter()
    await batcher.submit(rows([1.0]), 1)
    assert time.perf_counter() - started < 0.1  # no latency cap spent waiting for company
    assert runs == [1]


async def test_max_rows_caps_a_batch() -> None:
    run, runs = doubling()
    batcher = Batcher(run, max_rows=4, max_delay=0, queue_limit=100)
    await asyncio.gather(*(batcher.submit(rows([1.0]), 1) for _ in range(20)))
    assert max(runs) <= 4
    assert sum(runs) == 20


async def test_a_full_queue_answers_503() -> None:
    run, _ = doubling(0.05)
    batcher = Batcher(run, max_rows=1, max_delay=0, queue_limit=3, name="slow")
    outcomes = await asyncio.gather(
        *(batcher.submit(rows([1.0]), 1) for _ in range(10)), return_exceptions=True
    )
    refused = [o for o in outcomes if isinstance(o, QueueFull)]
    assert refused
    assert refused[0].status_code == 503
    assert "TUSK_INFERENCE_QUEUE_LIMIT" in refused[0].message
    assert len([o for o in outcomes if isinstance(o, dict)]) >= 3


async def test_requests_that_cannot_stack_run_apart() -> None:
    runs: list[tuple[int, ...]] = []

    def run(feeds: dict[str, Array]) -> dict[str, Array]:
        runs.append(feeds["x"].shape)
        time.sleep(0.002)
        return {"y": feeds["x"]}

    batcher = Batcher(run, max_rows=64, max_delay=0, queue_limit=100)
    wide = {"x": np.zeros((1, 3), dtype=np.float32)}
    narrow = {"x": np.zeros((1, 2), dtype=np.float32)}
    results = await asyncio.gather(*(batcher.submit(f, 1) for f in [wide, narrow] * 5))
    assert [r["y"].shape for r in results] == [(1, 3), (1, 2)] * 5
    assert all(shape[1] in (2, 3) for shape in runs)


async def test_one_bad_request_does_not_fail_its_batch() -> None:
    run, _ = doubling()
    batcher = Batcher(run, max_rows=64, max_delay=0.002, queue_limit=100)
    outcomes = await asyncio.gather(
        *(batcher.submit(rows([-1.0 if i == 5 else 1.0]), 1) for i in range(12)),
        return_exceptions=True,
    )
    failed = [i for i, o in enumerate(outcomes) if isinstance(o, Exception)]
    assert failed == [5]


async def test_a_caller_that_goes_away_is_skipped() -> None:
    run, runs = doubling(0.02)
    batcher = Batcher(run, max_rows=1, max_delay=0, queue_limit=100)
    first = asyncio.create_task(batcher.submit(rows([1.0]), 1))
    gone = asyncio.create_task(batcher.submit(rows([2.0]), 1))
    await asyncio.sleep(0.005)
    gone.cancel()
    assert (await first)["y"].tolist() == [[2.0]]
    await batcher.wait_idle()
    assert runs == [1]


def test_the_mode_follows_the_timing_and_the_settings() -> None:
    auto = EngineOptions(batching="auto", inline_max_seconds=0.001)
    assert choose_mode(0.00001, True, auto) == "inline"
    assert choose_mode(0.002, True, auto) == "batch"
    assert choose_mode(0.002, False, auto) == "thread"
    always = EngineOptions(batching="always", inline_max_seconds=0.001)
    assert choose_mode(0.00001, True, always) == "batch"
    assert choose_mode(0.00001, False, always) == "inline"
    never = EngineOptions(batching="never", inline_max_seconds=0.001)
    assert choose_mode(0.002, True, never) == "thread"


WIDE = 512  # the slow model's width

pytestmark_service = pytest.mark.parametrize("repo_context", ["embedded"], indirect=True)


@pytestmark_service
async def test_slow_models_are_batched_fast_ones_inline(
    repo_ctx: RepoContext, repos: RepoClient
) -> None:
    await commit_files(
        repos,
        "zoo",
        {
            "/slow.onnx": models.slow(width=WIDE, depth=48),
            "/fast.onnx": models.affine(),
            "/fixed.onnx": models.fixed_shape(),
        },
    )
    specs = "slow=zoo@master:/slow.onnx,fast=zoo@master:/fast.onnx,fixed=zoo@master:/fixed.onnx"
    # A threshold far from both models' warm-up times (the fastest of 20 runs, which load only
    # ever lengthens): the affine model runs in microseconds, 48 products by a 512² matrix in
    # milliseconds.
    async with serving(
        repo_ctx, repos, specs, TUSK_INFERENCE_INLINE_MAX_MS=0.3, TUSK_INFERENCE_WARMUP_RUNS=20
    ) as running:
        registry = running.context.registry
        fast = registry.resolve("fast").runner.engine
        slow = registry.resolve("slow").runner.engine
        assert fast.latency < 0.0003 < slow.latency, (fast.latency, slow.latency)
        assert (fast.mode, slow.mode) == ("inline", "batch")
        assert registry.resolve("fixed").runner.engine.mode in ("inline", "thread")
        metadata = (await running.http.get("/v2/models/slow")).json()["parameters"]
        assert metadata["execution"] == "batch"
        assert metadata["max_batch_rows"] == 32

        x = np.random.default_rng(1).normal(size=(24, WIDE)).astype(np.float32)
        answers = await asyncio.gather(
            *(
                running.infer(
                    "slow",
                    {
                        "inputs": [
                            {
                                "name": "x",
                                "shape": [1, WIDE],
                                "datatype": "FP32",
                                "data": x[i].tolist(),
                            }
                        ]
                    },
                )
                for i in range(24)
            )
        )
        assert [a.status_code for a in answers] == [200] * 24
        alone = await asyncio.to_thread(_run_alone, registry.resolve("slow").runner.engine, x)
        got = np.array([a.json()["outputs"][0]["data"][0] for a in answers])
        assert np.allclose(got, alone[:, 0], rtol=1e-4)
        text = (await running.http.get("/metrics")).text
        count, total = _histogram(text, "tusk_inference_batch_requests", "slow")
        assert total == 24
        assert count < 24


@pytestmark_service
async def test_batching_can_be_forced_either_way(repo_ctx: RepoContext, repos: RepoClient) -> None:
    await commit_files(repos, "zoo", {"/fast.onnx": models.affine()})
    async with serving(
        repo_ctx, repos, "fast=zoo@master:/fast.onnx", TUSK_INFERENCE_BATCHING="always"
    ) as running:
        assert running.context.registry.resolve("fast").runner.mode == "batch"
        answer = await running.infer(
            "fast",
            {
                "inputs": [
                    {"name": "x", "shape": [2, 4], "datatype": "FP32", "data": [[1] * 4, [2] * 4]}
                ]
            },
        )
        assert answer.json()["outputs"][0]["data"] == [3.0] * 4 + [5.0] * 4
    async with serving(
        repo_ctx,
        repos,
        "fast=zoo@master:/fast.onnx",
        TUSK_INFERENCE_BATCHING="never",
        TUSK_INFERENCE_INLINE_MAX_MS=0,
    ) as running:
        assert running.context.registry.resolve("fast").runner.mode == "thread"
        answer = await running.infer(
            "fast",
            {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [[1] * 4]}]},
        )
        assert answer.status_code == 200


@pytestmark_service
async def test_a_full_queue_answers_503_through_the_api(
    repo_ctx: RepoContext, repos: RepoClient
) -> None:
    await commit_files(repos, "zoo", {"/slow.onnx": models.slow(width=256, depth=64)})
    async with serving(
        repo_ctx,
        repos,
        "slow=zoo@master:/slow.onnx",
        TUSK_INFERENCE_BATCHING="always",
        TUSK_INFERENCE_QUEUE_LIMIT=2,
        TUSK_INFERENCE_MAX_BATCH_SIZE=1,
    ) as running:
        request = {
            "inputs": [{"name": "x", "shape": [1, 256], "datatype": "FP32", "data": [0.5] * 256}]
        }
        answers = await asyncio.gather(*(running.infer("slow", request) for _ in range(20)))
        statuses = [a.status_code for a in answers]
        assert 503 in statuses
        assert 200 in statuses
        refused = next(a for a in answers if a.status_code == 503)
        assert "requests waiting" in refused.json()["error"]


def _run_alone(engine: Any, x: Array) -> Array:
    return np.concatenate([engine.run({"x": x[i : i + 1]})["y"] for i in range(len(x))])


def _histogram(text: str, name: str, model: str) -> tuple[float, float]:
    values = {}
    for line in text.splitlines():
        for suffix in ("count", "sum"):
            if line.startswith(f'{name}_{suffix}{{model="{model}"}}'):
                values[suffix] = float(line.split()[-1])
    return values["count"], values["sum"]


@pytestmark_service
async def test_shutdown_lets_queued_requests_finish(
    repo_ctx: RepoContext, repos: RepoClient
) -> None:
    await commit_files(repos, "zoo", {"/slow.onnx": models.slow(width=256, depth=64)})
    async with serving(
        repo_ctx,
        repos,
        "slow=zoo@master:/slow.onnx",
        TUSK_INFERENCE_BATCHING="always",
        TUSK_INFERENCE_MAX_BATCH_SIZE=1,
    ) as running:
        runner = running.context.registry.resolve("slow").runner
        x = {"x": np.ones((1, 256), dtype=np.float32)}
        queued = [asyncio.create_task(runner.infer(x, 1)) for _ in range(8)]
        await asyncio.sleep(0)
        assert runner.batcher is not None
        assert runner.batcher.waiting > 0
    # The service stopped: it waited for every queued request to be answered.
    assert all(task.done() and not task.cancelled() for task in queued)
    assert all(task.result()["y"].shape == (1, 1) for task in queued)
