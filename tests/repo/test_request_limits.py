"""The limits every service applies before a handler runs (tusk.limits), on the repo service:
UTF-8 paths and queries, bodies parsed whole, stalled bodies, requests per client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import embedded_settings
from tests.repo.helpers import error, ok, serve
from tusk_repo.app import create_app
from tusk_repo.context import Context, build_context


@pytest.fixture
async def context(tmp_path: Path) -> AsyncIterator[Context]:
    settings = embedded_settings(
        tmp_path,
        max_request_bytes=4096,
        body_read_timeout=1.0,
        max_client_concurrency=2,
    )
    async with build_context(settings) as built:
        yield built


@pytest.fixture
async def client(context: Context) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(context=context))
    async with httpx.AsyncClient(transport=transport, base_url="http://repo") as c:
        yield c


async def test_invalid_utf8_in_a_path_query_is_refused(client: httpx.AsyncClient) -> None:
    ok(await client.post("/v1/repos", json={"name": "r"}), 201)
    commit = ok(await client.post("/v1/repos/r/commits", json={"branch": "master"}), 201)["id"]
    url = f"/v1/repos/r/commits/{commit}/file"
    for raw in ("/%FF%FE", "/%FE%FF"):  # both were stored as U+FFFD U+FFFD: one name for two
        response = await client.put(httpx.URL(url + "?path=" + raw), content=b"x")
        error(response, 400, "query is not valid UTF-8")
    ok(await client.put(url, params={"path": "/é"}, content=b"x"), 201)  # real UTF-8 is fine
    error(await client.get("/v1/repos/%FF"), 400, "path is not valid UTF-8")


async def test_a_body_parsed_whole_is_refused_over_the_limit(client: httpx.AsyncClient) -> None:
    big = b'{"name": "r", "description": "' + b"x" * 10_000 + b'"}'
    headers = {"content-type": "application/json"}
    declared = await client.post("/v1/repos", content=big, headers=headers)
    error(declared, 413, "TUSK_MAX_REQUEST_BYTES", "4096")

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: cut off while read
        for i in range(0, len(big), 1000):
            yield big[i : i + 1000]

    streamed = await client.post("/v1/repos", content=chunked(), headers=headers)
    error(streamed, 413, "TUSK_MAX_REQUEST_BYTES")
    assert (await client.get("/v1/repos")).json() == []


async def test_streamed_uploads_are_not_held_to_the_json_limit(client: httpx.AsyncClient) -> None:
    ok(await client.post("/v1/repos", json={"name": "r"}), 201)
    commit = ok(await client.post("/v1/repos/r/commits", json={"branch": "master"}), 201)["id"]
    url = f"/v1/repos/r/commits/{commit}/file"
    ok(await client.put(url, params={"path": "/big"}, content=b"x" * 100_000), 201)


async def test_one_client_runs_a_bounded_number_of_requests(client: httpx.AsyncClient) -> None:
    ok(await client.post("/v1/repos", json={"name": "r"}), 201)
    commit = ok(await client.post("/v1/repos/r/commits", json={"branch": "master"}), 201)["id"]
    url = f"/v1/repos/r/commits/{commit}/file"
    release = asyncio.Event()
    started = [asyncio.Event(), asyncio.Event()]

    def held_body(i: int) -> AsyncIterator[bytes]:
        async def body() -> AsyncIterator[bytes]:
            yield b"first piece"
            started[i].set()
            await release.wait()
            yield b"last piece"

        return body()

    held = [
        asyncio.create_task(client.put(url, params={"path": f"/h{i}"}, content=held_body(i)))
        for i in range(2)
    ]
    for event in started:
        await event.wait()
    refused = await client.get("/v1/repos")
    error(refused, 429, "TUSK_MAX_CLIENT_CONCURRENCY")
    assert refused.headers["retry-after"] == "1"
    ok(await client.get("/healthz"))  # probes are never refused
    release.set()
    for task in held:
        ok(await task, 201)
    ok(await client.get("/v1/repos"))  # the slots are free again


async def test_a_stalled_body_is_dropped(context: Context, client: httpx.AsyncClient) -> None:
    """A client declaring 5 GB and sending 10 bytes is let go after the body-read timeout."""
    ok(await client.post("/v1/repos", json={"name": "r"}), 201)
    ok(await client.post("/v1/repos/r/commits", json={"branch": "master"}), 201)
    async with serve(create_app(context=context)) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"PUT /v1/repos/r/commits/master/file?path=/x HTTP/1.1\r\nHost: repo\r\n"
            b"Content-Length: 5000000000\r\n\r\n0123456789"
        )
        await writer.drain()
        # The upload is read as cut off (400) and the connection ends. Without the timeout the
        # handler waited for the rest of the body for good.
        answer = await asyncio.wait_for(reader.read(), timeout=120)
        assert answer == b"" or answer.startswith(b"HTTP/1.1 4"), answer[:200]
        writer.close()
