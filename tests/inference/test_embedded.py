"""`tusk up` runs the inference service with the others, on the shared in-process bus."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx
import pytest

from tests.inference import models
from tests.inference.conftest import affine_request, commit_files
from tusk.client import RepoClient
from tusk_inference.config import InferenceSettings
from tusk_repo.config import RepoSettings
from tusk_scheduler.config import SchedulerSettings
from tusk_stack.embedded import EmbeddedSettings, run_embedded
from tusk_trigger.config import TriggerSettings


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [int(sock.getsockname()[1]) for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


@pytest.mark.parametrize("repo", ["train", "vision/train"])
async def test_tusk_up_serves_models_and_follows_their_branch(tmp_path: Path, repo: str) -> None:
    """Also from a repo of a project: vision/train@master:/model.onnx."""
    repo_port, trigger_port, scheduler_port, inference_port = free_ports(4)
    common = {"data_dir": tmp_path / "data"}
    settings = EmbeddedSettings(
        repo=RepoSettings(**common, TUSK_REPO_PORT=repo_port),  # type: ignore[call-arg]
        trigger=TriggerSettings(**common, TUSK_TRIGGER_PORT=trigger_port),  # type: ignore[call-arg]
        scheduler=SchedulerSettings(**common, TUSK_SCHEDULER_PORT=scheduler_port),  # type: ignore[call-arg]
        inference=InferenceSettings(  # type: ignore[call-arg]
            **common,
            TUSK_INFERENCE_PORT=inference_port,
            TUSK_MODELS=f"credit={repo}@master:/model.onnx",
            TUSK_INFERENCE_WARMUP_RUNS=3,
        ),
    )
    stop = asyncio.Event()
    running = asyncio.create_task(run_embedded(settings, stop=stop, handle_signals=False))
    inference = f"http://127.0.0.1:{inference_port}"
    try:
        async with httpx.AsyncClient(base_url=inference) as http:
            for _ in range(300):
                if running.done():
                    running.result()
                try:
                    if (await http.get("/v2/health/live")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            assert (await http.get("/v2/health/ready")).status_code == 400  # nothing yet
            async with RepoClient(f"http://127.0.0.1:{repo_port}") as repos:
                if "/" in repo:
                    await repos.create_project(repo.partition("/")[0])
                first = await commit_files(repos, repo, {"/model.onnx": models.affine()})
                answer = await _answer(http, first.id)
                assert answer["outputs"][0]["data"] == [3.0] * 4
                second = await commit_files(
                    repos, repo, {"/model.onnx": models.affine(scale=3.0)}
                )
                answer = await _answer(http, second.id)
                assert answer["outputs"][0]["data"] == [4.0] * 4
            assert (await http.get("/v2/health/ready")).status_code == 200
    finally:
        stop.set()
        await asyncio.wait_for(running, 60)


async def _answer(http: httpx.AsyncClient, version: str) -> dict[str, object]:
    """The first answer from ``version`` (loaded from the commit's event)."""
    for _ in range(400):
        response = await http.post("/v2/models/credit/infer", json=affine_request([[1, 1, 1, 1]]))
        if response.status_code == 200 and response.json()["model_version"] == version:
            body: dict[str, object] = response.json()
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"version {version} was never served")
