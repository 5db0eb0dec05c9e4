"""PostgreSQL stopped under a stream of puts: the repo service answers 503 with Retry-After
(never 500), and the shared client rides the outage out by retrying what is safe to repeat."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.backing.postgres import PostgresServer
from tests.backing.s3 import S3Server
from tests.conftest import real_settings
from tests.inference.conftest import serve_app
from tusk.client import RepoClient
from tusk_repo.app import create_app
from tusk_repo.context import build_context

pytestmark = [pytest.mark.postgres]


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of this test's own: stopping it must not disturb other tests."""
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def repo_url(
    own_postgres: PostgresServer, s3: S3Server, tmp_path: Path
) -> AsyncIterator[str]:
    settings = real_settings(own_postgres, s3, tmp_path)
    async with build_context(settings) as context, serve_app(create_app(context=context)) as at:
        yield f"http://{at}"


async def test_a_stopped_database_answers_503_and_clients_retry(
    own_postgres: PostgresServer, repo_url: str
) -> None:
    async with RepoClient(repo_url) as client:
        await client.create_repo("outage")
        commit = (await client.start_commit("outage", "master")).id
    statuses: Counter[int] = Counter()
    retry_after: set[str] = set()
    outage_seen = asyncio.Event()
    recovered = asyncio.Event()
    stop = asyncio.Event()

    async def raw_stream() -> None:
        """Puts without retries: every answer is recorded."""
        async with httpx.AsyncClient(base_url=repo_url, timeout=60) as http:
            while not stop.is_set():
                response = await http.put(
                    f"/v1/repos/outage/commits/{commit}/file",
                    params={"path": f"/raw/{uuid.uuid4().hex}"},
                    content=b"data",
                )
                statuses[response.status_code] += 1
                if response.status_code == 503:
                    retry_after.add(response.headers.get("retry-after", ""))
                    if statuses[503] >= 3:
                        outage_seen.set()
                elif response.status_code == 201 and outage_seen.is_set():
                    recovered.set()
                await asyncio.sleep(0)

    retried_ok = 0

    async def retrying_stream() -> None:
        """Puts through the shared client: each one ends in success despite the outage."""
        nonlocal retried_ok
        async with RepoClient(repo_url) as client:
            while not stop.is_set():
                await client.put_file("outage", commit, f"/retried/{uuid.uuid4().hex}", b"d")
                retried_ok += 1

    raw = asyncio.create_task(raw_stream())
    retrying = asyncio.create_task(retrying_stream())
    try:
        while statuses[201] < 10:  # the stream is under way
            await asyncio.sleep(0.05)
        await asyncio.to_thread(own_postgres.halt)
        await asyncio.wait_for(outage_seen.wait(), timeout=120)
        before = retried_ok
        await asyncio.to_thread(own_postgres.resume)
        await asyncio.wait_for(recovered.wait(), timeout=120)
        while retried_ok < before + 5:  # the retrying client goes on after the outage
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        results = await asyncio.gather(raw, retrying, return_exceptions=True)
    assert results == [None, None], results  # the retrying client never gave up
    assert set(statuses) <= {201, 503}, statuses  # no 500, no reset (that would raise)
    assert retry_after, "no 503 carried Retry-After"
    assert all(v.isdigit() and int(v) >= 1 for v in retry_after), retry_after
    async with RepoClient(repo_url) as client:
        finished = await client.finish_commit("outage", commit)
    assert finished.file_count == statuses[201] + retried_ok


@pytest.fixture
def own_s3() -> Iterator[S3Server]:
    server = S3Server()
    server.start()
    yield server
    server.stop()


@pytest.mark.s3
async def test_an_unreachable_object_store_answers_503(
    postgres: PostgresServer, own_s3: S3Server, tmp_path: Path
) -> None:
    settings = real_settings(postgres, own_s3, tmp_path)
    async with build_context(settings) as context:
        transport = httpx.ASGITransport(app=create_app(context=context))
        async with httpx.AsyncClient(transport=transport, base_url="http://repo") as http:
            repo = f"s3down{uuid.uuid4().hex[:8]}"
            assert (await http.post("/v1/repos", json={"name": repo})).status_code == 201
            started = await http.post(f"/v1/repos/{repo}/commits", json={"branch": "master"})
            url = f"/v1/repos/{repo}/commits/{started.json()['id']}/file"
            ok = await http.put(url, params={"path": "/a"}, content=b"before")
            assert ok.status_code == 201, ok.text
            await asyncio.to_thread(own_s3.stop)
            down = await http.put(url, params={"path": "/b"}, content=uuid.uuid4().bytes)
            assert down.status_code == 503, down.text
            assert down.headers["retry-after"].isdigit()
            assert "S3" in down.json()["error"]
