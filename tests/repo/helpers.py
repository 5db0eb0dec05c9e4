from __future__ import annotations

import asyncio
import io
import socket
import tarfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI


def tar_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def error(response: httpx.Response, status: int, *fragments: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"error", "code"}, body
    for fragment in fragments:
        assert fragment in body["error"], body["error"]
    return str(body["error"])


async def commit_files(
    client: httpx.AsyncClient,
    repo: str,
    files: dict[str, bytes],
    branch: str = "master",
    **start: Any,
) -> dict[str, Any]:
    """Start a commit, put the files, finish it; the finished commit's info."""
    commit = ok(
        await client.post(f"/v1/repos/{repo}/commits", json={"branch": branch, **start}), 201
    )
    for path, data in files.items():
        ok(
            await client.put(
                f"/v1/repos/{repo}/commits/{commit['id']}/file", params={"path": path}, content=data
            ),
            201,
        )
    result: dict[str, Any] = ok(
        await client.post(f"/v1/repos/{repo}/commits/{commit['id']}/finish")
    )
    return result


async def read(client: httpx.AsyncClient, repo: str, ref: str, path: str) -> bytes:
    response = await client.get(f"/v1/repos/{repo}/commits/{ref}/file", params={"path": path})
    assert response.status_code == 200, response.text
    return response.content


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[int]:
    """``app`` behind a real uvicorn on a free loopback port (yielded), as deployed: raw HTTP,
    ``%2F`` decoded before routing, request bodies read as they arrive."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)  # polling a flag uvicorn sets; no duration is assumed
        yield port
    finally:
        server.should_exit = True
        await serving
