"""Writes through the S3 gateway's domain, on both backends. Multipart: a part goes to the
object store as chunks while it arrives, so an upload of any size holds a few chunks in
memory, never its parts; an aborted upload leaves no commit, and nothing its collection does
not remove. Small puts: read before their repo is looked up, and still refused, with nothing
stored, when it is missing."""

from __future__ import annotations

import asyncio
import os
import tracemalloc
from collections.abc import AsyncIterator, Awaitable
from datetime import timedelta
from pathlib import Path
from typing import Any

import blake3
import httpx
import pytest

from tests.conftest import TEST_CHUNK_SIZE
from tests.repo.test_gc import isolated
from tusk.errors import Unavailable
from tusk_repo.context import Context
from tusk_repo.s3.app import create_gateway_app
from tusk_repo.s3.gateway import Gateway
from tusk_repo.s3.xml import S3Error

PIECE = 16 * 1024  # what a client's connection delivers at a time
PART = 32 * TEST_CHUNK_SIZE  # 2 MiB
PARTS = 4


@pytest.fixture(params=["embedded", "real"])
async def ctx(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Context]:
    servers: dict[str, Any] = {}
    if request.param == "real":
        servers = {"postgres": request.getfixturevalue("postgres"),
                   "s3": request.getfixturevalue("s3")}
    async with isolated(request.param, tmp_path, **servers) as (context, _):
        async with context.db.session() as session:
            await context.service.create_repo(session, "up", "")
        yield context


async def _body(size: int, hasher: Any) -> AsyncIterator[bytes]:
    """``size`` random bytes in pieces, made as they are asked for (the test holds none)."""
    for _ in range(size // PIECE):
        piece = os.urandom(PIECE)
        hasher.update(piece)
        yield piece


async def _chunk_keys(ctx: Context) -> list[str]:
    return [key async for key in ctx.objects.list_keys("chunks/")]


async def test_a_multipart_upload_holds_a_few_chunks_not_its_parts(ctx: Context) -> None:
    gateway = Gateway(ctx)
    upload_id = await gateway.create_upload("up", "master/big.bin")
    upload = gateway.upload("up", "master/big.bin", upload_id)
    whole = blake3.blake3()
    tracemalloc.start()
    try:
        for number in range(1, PARTS + 1):
            await gateway.upload_part(upload, number, _body(PART, whole))
        stored, commit = await gateway.complete_upload(
            upload_id, upload, list(range(1, PARTS + 1))
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stored.size == PARTS * PART
    assert stored.hash == whole.hexdigest()
    # Chunks in flight and the one being filled, and the service's own bookkeeping: nowhere
    # well under the 8 MiB that went through.
    bound = (ctx.settings.upload_concurrency + 2) * TEST_CHUNK_SIZE + (2 << 20)
    assert peak < bound, f"peak {peak} bytes traced for a {PARTS * PART}-byte upload"
    info, _ = await gateway.head_object("up", f"{commit}/big.bin")
    assert info.size == PARTS * PART
    assert gateway.uploads == {}


async def test_an_aborted_upload_leaves_nothing_behind(ctx: Context) -> None:
    gateway = Gateway(ctx)
    upload_id = await gateway.create_upload("up", "master/gone.bin")
    upload = gateway.upload("up", "master/gone.bin", upload_id)
    for number in (1, 2):
        await gateway.upload_part(upload, number, _body(PART, blake3.blake3()))
    assert await _chunk_keys(ctx), "the parts were not written to the object store"

    gateway.abort_upload(upload_id)

    with pytest.raises(S3Error) as refused:
        gateway.upload("up", "master/gone.bin", upload_id)
    assert refused.value.code == "NoSuchUpload"
    async with ctx.db.session(write=False) as session:
        row = await ctx.service.get_repo(session, "up")
        assert await ctx.service.list_commits(session, row) == ([], None)
    # The parts' chunks belong to no file: collection removes them (here at once; in
    # service, once they are older than the grace period).
    await ctx.collector.run(grace=timedelta(0))
    assert await _chunk_keys(ctx) == []


async def test_a_small_put_to_a_missing_repo_stores_nothing(ctx: Context) -> None:
    gateway = Gateway(ctx)

    async def body() -> AsyncIterator[bytes]:
        yield b"hello"

    with pytest.raises(S3Error) as refused:
        await gateway.put_object("no-such-repo", "master/a.txt", body(), length=5)
    assert (refused.value.status_code, refused.value.code) == (404, "NoSuchBucket")
    assert await _chunk_keys(ctx) == []
    digest, _ = await gateway.put_object("up", "master/a.txt", body(), length=5)
    assert await _chunk_keys(ctx), "a put to the repo that exists stored nothing"
    assert digest == blake3.blake3(b"hello").hexdigest()


async def _small(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _open_commit(ctx: Context) -> str:
    async with ctx.db.session() as session:
        row = await ctx.service.get_repo(session, "up")
        return (await ctx.service.start_commit(session, row, "master")).id


async def _contents(gateway: Gateway, commit: str, names: list[str]) -> dict[str, bytes]:
    found = {}
    for name in names:
        try:
            _, stored = await gateway.head_object("up", f"{commit}/{name}")
        except S3Error:
            continue
        found[name] = b"".join([p async for p in gateway.read(stored, 0, stored.size)])
    return found


class Waves:
    """Puts sent in waves, each while the batch before it is being stored: one batch a wave
    (the gateway takes the next batch when the one before goes to SQL). ``fail``: the
    storing of that batch (1-based) fails."""

    def __init__(self, ctx: Context, monkeypatch: pytest.MonkeyPatch, fail: int = 0) -> None:
        self.batches = 0
        self._started = asyncio.Event()
        write_many = ctx.chunks.write_many

        async def counted(contents: Any) -> Any:
            self.batches += 1
            self._started.set()
            if self.batches == fail:
                raise Unavailable("the object store is down")
            return await write_many(contents)

        monkeypatch.setattr(ctx.chunks, "write_many", counted)

    async def send(self, waves: list[list[Awaitable[tuple[str, str]]]]) -> list[Any]:
        tasks: list[asyncio.Task[tuple[str, str]]] = []
        for wave in waves:
            self._started.clear()
            tasks += [asyncio.ensure_future(put) for put in wave]
            await self._started.wait()
        return await asyncio.gather(*tasks, return_exceptions=True)


async def test_concurrent_puts_are_staged_in_batches_and_the_last_put_of_a_path_wins(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Puts are grouped into batches, a batch stored while the one before it is written to
    SQL; the batches still reach the commit in the order their puts arrived."""
    gateway = Gateway(ctx)
    commit = await _open_commit(ctx)
    waves = Waves(ctx, monkeypatch)

    def put(name: str, data: bytes) -> Awaitable[tuple[str, str]]:
        return gateway.put_object("up", f"master/{name}", _small(data), length=len(data))

    answers = await waves.send([
        [put(f"f/{w}-{i:02d}", b"%d" % i) for i in range(50)] + [put("same", b"%d" % w)]
        for w in range(4)
    ])
    assert waves.batches == 4
    assert {c for _, c in answers} == {commit}
    names = [f"f/{w}-{i:02d}" for w in range(4) for i in range(50)]
    found = await _contents(gateway, commit, [*names, "same"])
    assert found.pop("same") == b"3", "a later put of the path was overtaken by an earlier one"
    assert found == {n: n[-2:].lstrip("0").encode() or b"0" for n in names}


async def test_a_batch_that_fails_is_absent_whole_and_the_others_are_whole(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The puts staged together are in the commit all together or not at all: when storing a
    batch fails, each of its puts is answered with the error and none of them is staged,
    while the batches before and after it are staged whole."""
    gateway = Gateway(ctx)
    commit = await _open_commit(ctx)
    waves = Waves(ctx, monkeypatch, fail=2)
    names = [[f"g/{w}-{i:02d}" for i in range(50)] for w in range(3)]
    answers = await waves.send([
        [gateway.put_object("up", f"master/{n}", _small(n.encode()), length=len(n))
         for n in wave] for wave in names
    ])
    assert waves.batches == 3
    flat = [n for wave in names for n in wave]
    failed = {n for n, a in zip(flat, answers, strict=True) if isinstance(a, Exception)}
    assert failed == set(names[1])
    assert all(isinstance(a, Unavailable) for a in answers if isinstance(a, Exception))
    found = await _contents(gateway, commit, flat)
    assert found == {n: n.encode() for n in names[0] + names[2]}


async def test_a_method_s3_lacks_and_a_failure_inside_are_answered_as_s3_errors(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests go straight to the gateway's endpoint (no router): what it does not serve and
    what fails unexpectedly still get S3's XML errors, which clients switch on (and retry an
    InternalError)."""
    app = create_gateway_app(ctx)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://s3") as client:
        refused = await client.request("PATCH", "/up/master/a.txt")
        assert refused.status_code == 405
        assert "<Code>MethodNotAllowed</Code>" in refused.text

        async def broken(*args: Any) -> Any:
            raise RuntimeError("a bug")

        monkeypatch.setattr(Gateway, "head_object", broken)
        failed = await client.get("/up/master/a.txt")
        assert failed.status_code == 500
        assert "<Code>InternalError</Code>" in failed.text
