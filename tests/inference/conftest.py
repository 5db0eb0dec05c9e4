"""Fixtures for the inference tests: the repo service in-process (``repo_ctx``, from the root
conftest), a client of it, and the inference service on top, sharing the repo's event bus."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn

from tusk.client import CommitInfo, CommitRef, RepoClient
from tusk.errors import NotFound
from tusk_inference.app import create_app
from tusk_inference.config import InferenceSettings
from tusk_inference.context import Context, build_context
from tusk_repo.app import create_app as create_repo_app
from tusk_repo.context import Context as RepoContext

WAIT = 20.0


@pytest.fixture
async def repos(repo_ctx: RepoContext) -> AsyncIterator[RepoClient]:
    transport = httpx.ASGITransport(app=create_repo_app(context=repo_ctx))
    async with RepoClient("http://repo.test", transport=transport) as client:
        yield client


async def commit_files(
    repos: RepoClient,
    repo: str,
    files: dict[str, bytes],
    *,
    branch: str = "master",
    provenance: Iterable[CommitInfo] = (),
    error: str | None = None,
) -> CommitInfo:
    """A finished commit of ``files`` (the repo is created if missing)."""
    try:
        await repos.inspect_repo(repo)
    except NotFound:
        await repos.create_repo(repo)
    inputs = list(provenance)
    commit = await repos.start_commit(
        repo,
        branch,
        provenance=[CommitRef(repo=p.repo, commit=p.id) for p in inputs],
        global_id=inputs[0].global_id if inputs else None,
    )
    for path, data in files.items():
        await repos.put_file(repo, commit.id, path, data)
    return await repos.finish_commit(repo, commit.id, error=error)


@dataclass
class Serving:
    """The inference service in-process, and an HTTP client of its app."""

    context: Context
    http: httpx.AsyncClient
    repos: RepoClient

    async def wait_serving(self, model: str, commit: str, timeout: float = WAIT) -> None:
        """Until ``model`` serves ``commit`` by default."""
        slot = self.context.registry.slot(model)

        async def until() -> None:
            while slot.latest is None or slot.latest.commit != commit:
                await self.context.service.changed()

        await asyncio.wait_for(until(), timeout)

    async def wait_failed(self, model: str, commit: str, timeout: float = WAIT) -> str:
        """Until loading ``commit`` of ``model`` has failed; the error."""
        slot = self.context.registry.slot(model)

        async def until() -> str:
            while slot.last_failure is None or slot.last_failure.commit != commit:
                await self.context.service.changed()
            return slot.last_failure.error

        return await asyncio.wait_for(until(), timeout)

    async def infer(
        self, model: str, request: dict[str, Any], version: str | None = None
    ) -> httpx.Response:
        path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
        return await self.http.post(path, json=request)


@asynccontextmanager
async def serving(
    repo_ctx: RepoContext, repos: RepoClient, models: str, *, wait: bool = True, **settings: Any
) -> AsyncIterator[Serving]:
    """The inference service for ``models`` (``TUSK_MODELS`` syntax); with ``wait``, once
    every model serves a version."""
    values: dict[str, Any] = {"TUSK_MODELS": models, "TUSK_INFERENCE_WARMUP_RUNS": 3}
    values.update(settings)
    inference_settings = InferenceSettings(**values)
    async with build_context(inference_settings, bus=repo_ctx.bus, repos=repos) as context:
        if wait:
            await asyncio.wait_for(context.service.wait_loaded(), WAIT)
        transport = httpx.ASGITransport(app=create_app(context=context))
        async with httpx.AsyncClient(transport=transport, base_url="http://inference") as http:
            yield Serving(context, http, repos)


def affine_request(rows: list[list[float]], **extra: Any) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": "x", "shape": [len(rows), len(rows[0])], "datatype": "FP32", "data": rows}
        ],
        **extra,
    }


@asynccontextmanager
async def http_server(context: Context) -> AsyncIterator[str]:
    """The inference app behind a real uvicorn server on a free port; its host:port."""
    async with serve_app(create_app(context=context)) as address:
        yield address


@asynccontextmanager
async def serve_app(app: Any) -> AsyncIterator[str]:
    """An ASGI app behind a real uvicorn server on a free port, in this event loop."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()
