"""Garbage collection, on the embedded backends (SQLite + local directory) and the real ones
(PostgreSQL + S3): each test has a database and a store of its own, so that what remains can
be compared byte for byte with what was there before."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from tests.backing.postgres import PostgresServer
from tests.backing.s3 import S3Server
from tests.conftest import (
    TEST_CHUNK_SIZE,
    embedded_settings,
    fresh_postgres_database,
    real_settings,
)
from tests.repo.helpers import commit_files, error, ok, read, tar_of
from tusk.errors import Conflict, NotFound
from tusk.objectstore.chunks import ChunkedFile, chunk_key
from tusk_repo.app import create_app
from tusk_repo.config import RepoSettings
from tusk_repo.context import Context, build_context
from tusk_repo.tables import FileRow, TreeRow

NO_GC_LOOP = {"TUSK_REPO_GC_INTERVAL_SECONDS": 0}


@asynccontextmanager
async def isolated(
    kind: str, tmp: Path, request: pytest.FixtureRequest | None = None, **servers: Any
) -> AsyncIterator[tuple[Context, httpx.AsyncClient]]:
    settings: RepoSettings
    if kind == "embedded":
        settings = embedded_settings(tmp, **NO_GC_LOOP)
    else:
        postgres: PostgresServer = servers["postgres"]
        s3: S3Server = servers["s3"]
        settings = real_settings(postgres, s3, tmp, **NO_GC_LOOP)
        settings = settings.model_copy(
            update={"database_url": await fresh_postgres_database(postgres)}
        )
    async with build_context(settings) as ctx:
        transport = httpx.ASGITransport(app=create_app(context=ctx))
        async with httpx.AsyncClient(transport=transport, base_url="http://repo") as client:
            yield ctx, client


@pytest.fixture(params=["embedded", "real"])
def backend(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == "embedded":
        return {"kind": "embedded"}
    return {
        "kind": "real",
        "postgres": request.getfixturevalue("postgres"),
        "s3": request.getfixturevalue("s3"),
    }


@pytest.fixture
async def gc_env(
    backend: dict[str, Any], tmp_path: Path
) -> AsyncIterator[tuple[Context, httpx.AsyncClient]]:
    servers = {k: v for k, v in backend.items() if k != "kind"}
    async with isolated(backend["kind"], tmp_path, **servers) as env:
        yield env


async def objects(ctx: Context) -> dict[str, bytes]:
    return {key: await ctx.objects.get(key) async for key in ctx.objects.list_keys("chunks/")}


async def rows(ctx: Context) -> tuple[set[str], set[str]]:
    async with ctx.db.session(write=False) as session:
        files = set(await session.scalars(select(FileRow.hash)))
        trees = set(await session.scalars(select(TreeRow.hash)))
    return files, trees


async def gc(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    result: dict[str, Any] = ok(await client.post("/v1/gc", params={"grace_seconds": 0, **params}))
    return result


def kept_files(n: int, salt: bytes) -> dict[str, bytes]:
    return {f"/kept/{i}.txt": salt + str(i).encode() * 100 for i in range(n)}


async def test_after_deletes_the_store_returns_to_what_remains_byte_for_byte(
    gc_env: tuple[Context, httpx.AsyncClient],
) -> None:
    ctx, client = gc_env
    big = os.urandom(TEST_CHUNK_SIZE * 3 + 17)
    ok(await client.post("/v1/repos", json={"name": "keep"}), 201)
    ok(await client.post("/v1/repos/keep/commits", json={}), 201)
    ok(
        await client.post(
            "/v1/repos/keep/commits/master/files", content=tar_of(kept_files(40, b"k"))
        ),
        201,
    )
    ok(
        await client.put(
            "/v1/repos/keep/commits/master/file", params={"path": "/big"}, content=big
        ),
        201,
    )
    kept = ok(await client.post("/v1/repos/keep/commits/master/finish"))
    before_objects, before_rows = await objects(ctx), await rows(ctx)

    # Garbage of every kind: a whole repo (sharing some contents with the kept one), commits
    # deleted from the kept repo, a squashed range, an abandoned commit and a deleted branch.
    ok(await client.post("/v1/repos", json={"name": "scratch"}), 201)
    await commit_files(client, "scratch", {"/big": big, "/own": os.urandom(TEST_CHUNK_SIZE * 2)})
    ok(await client.post("/v1/repos/scratch/commits", json={}), 201)
    ok(
        await client.post(
            "/v1/repos/scratch/commits/master/files",
            content=tar_of(kept_files(40, b"k") | {"/x": b"x" * 5000}),
        ),
        201,
    )
    ok(await client.post("/v1/repos/scratch/commits/master/finish"))
    extra = await commit_files(client, "keep", {"/tmp/a": os.urandom(9000)})
    extra2 = await commit_files(client, "keep", {"/tmp/b": os.urandom(9000)})
    ok(
        await client.post(
            "/v1/repos/keep/squash", json={"oldest": extra["id"], "newest": extra2["id"]}
        )
    )
    ok(await client.post(f"/v1/repos/keep/commits/{extra2['id']}/delete"))
    ok(await client.post("/v1/repos/keep/commits", json={"branch": "wip"}), 201)
    ok(
        await client.put(
            "/v1/repos/keep/commits/wip/file", params={"path": "/w"}, content=os.urandom(5000)
        ),
        201,
    )
    ok(await client.delete("/v1/repos/keep/commits/wip"), 204)
    ok(await client.delete("/v1/repos/keep/branches/wip"), 204)
    ok(await client.delete("/v1/repos/scratch"), 204)
    assert len(await objects(ctx)) > len(before_objects)

    dry = await gc(client, dry_run="true")
    assert dry["dry_run"] is True
    assert dry["chunks"] > 0
    assert dry["files"] > 0
    assert dry["tree_nodes"] > 0
    assert len(await objects(ctx)) > len(before_objects)  # a dry run deletes nothing

    done = await gc(client)
    assert (done["chunks"], done["bytes"], done["files"], done["tree_nodes"]) == (
        dry["chunks"],
        dry["bytes"],
        dry["files"],
        dry["tree_nodes"],
    )
    assert await objects(ctx) == before_objects
    assert await rows(ctx) == before_rows
    assert done["referenced_bytes"] == sum(len(v) for v in before_objects.values())
    assert await read(client, "keep", kept["id"], "/big") == big
    for path, data in kept_files(40, b"k").items():
        assert await read(client, "keep", "master", path) == data
    again = await gc(client)
    assert (again["chunks"], again["files"], again["tree_nodes"]) == (0, 0, 0)


async def test_nodes_saved_without_packed_references_are_decoded_by_the_mark(
    gc_env: tuple[Context, httpx.AsyncClient],
) -> None:
    """A node written by an older process (before references were kept) has none: the mark
    decodes its entries instead, and keeps everything it reaches."""
    ctx, client = gc_env
    kept = {"/a/b/c.txt": os.urandom(3000), "/a/d.txt": b"d" * 700, "/e.txt": os.urandom(9000)}
    ok(await client.post("/v1/repos", json={"name": "keep"}), 201)
    await commit_files(client, "keep", kept)
    before_objects, before_rows = await objects(ctx), await rows(ctx)
    ok(await client.post("/v1/repos", json={"name": "scratch"}), 201)
    await commit_files(client, "scratch", {"/a/x": os.urandom(5000), "/y/z": b"z" * 800})
    ok(await client.delete("/v1/repos/scratch"), 204)
    dry = await gc(client, dry_run="true")
    async with ctx.db.session() as session:
        await session.execute(update(TreeRow).values(subdirs=None, file_keys=None))
    done = await gc(client)
    assert (done["chunks"], done["files"], done["tree_nodes"]) == (
        dry["chunks"],
        dry["files"],
        dry["tree_nodes"],
    )
    assert done["files"] > 0
    assert await objects(ctx) == before_objects
    assert await rows(ctx) == before_rows
    for path, data in kept.items():
        assert await read(client, "keep", "master", path) == data


async def test_young_unreferenced_chunks_are_spared_for_uploads_in_flight(
    gc_env: tuple[Context, httpx.AsyncClient],
) -> None:
    ctx, client = gc_env
    ok(await client.post("/v1/repos", json={"name": "r"}), 201)
    await commit_files(client, "r", {"/a": os.urandom(3000)})
    # An upload has written its chunks but not yet recorded its file.
    orphan = await ctx.chunks.write_bytes(os.urandom(4000))
    report = await gc(client, grace_seconds=3600)
    assert report["kept_recent_chunks"] == 1
    assert report["chunks"] == 0
    assert await ctx.objects.exists(
        f"chunks/{orphan.chunks[0][0][:2]}/{orphan.chunks[0][0][2:4]}/{orphan.chunks[0][0]}"
    )
    report = await gc(client)
    assert report["chunks"] == 1


async def test_a_file_reclaimed_during_an_upload_is_refused_not_lost(
    gc_env: tuple[Context, httpx.AsyncClient],
) -> None:
    """A batch put finds some contents stored and skips writing them; if collection reclaims
    them before the put records its files, the put must fail rather than record files whose
    chunks are gone."""
    ctx, client = gc_env
    content = os.urandom(2000)
    ok(await client.post("/v1/repos", json={"name": "old"}), 201)
    await commit_files(client, "old", {"/f": content})
    async with ctx.db.session(write=False) as session:
        found: dict[str, ChunkedFile] = await ctx.service.stored_files(
            session, {f.hash async for f in _hashes(ctx, content)}
        )
    assert len(found) == 1
    ok(await client.delete("/v1/repos/old"), 204)
    await gc(client)
    ok(await client.post("/v1/repos", json={"name": "new"}), 201)
    ok(await client.post("/v1/repos/new/commits", json={}), 201)
    async with ctx.db.session() as session:
        repo = await ctx.service.get_repo(session, "new")
        with pytest.raises(Conflict, match="reclaimed by garbage collection"):
            await ctx.service.put_files(
                session, repo, "master", [("/f", *found.values())], written=set()
            )
    # Sent again, it is written afresh and reads back whole.
    ok(
        await client.post("/v1/repos/new/commits/master/files", content=tar_of({"/f": content})),
        201,
    )
    ok(await client.post("/v1/repos/new/commits/master/finish"))
    assert await read(client, "new", "master", "/f") == content


async def _hashes(ctx: Context, content: bytes) -> AsyncIterator[ChunkedFile]:
    from tusk.objectstore.chunks import hash_bytes

    yield ChunkedFile(hash_bytes(content), len(content), ())


async def test_retention_drops_old_commits_of_other_branches(
    gc_env: tuple[Context, httpx.AsyncClient],
) -> None:
    _, client = gc_env
    ok(await client.post("/v1/repos", json={"name": "exp"}), 201)
    base = await commit_files(client, "exp", {"/m": b"m"})
    ok(await client.post("/v1/repos/exp/branches", json={"name": "dev", "head": "master"}), 201)
    made = [
        await commit_files(client, "exp", {"/d": os.urandom(3000)}, branch="dev") for _ in range(5)
    ]
    ok(await client.post("/v1/repos/exp/tags", json={"name": "pinned", "ref": made[0]["id"]}), 201)
    error(await client.put("/v1/repos/exp/retention", json={"keep_last": 0}), 400)
    info = ok(await client.put("/v1/repos/exp/retention", json={"keep_last": 2, "keep_days": 0}))
    assert (info["keep_last"], info["keep_days"]) == (2, 0)
    report = await gc(client)
    # The two newest stay, the tagged one stays, master's commit is never touched.
    assert {c["commit"] for c in report["retention_commits"]} == {made[1]["id"], made[2]["id"]}
    for kept in (made[0], made[3], made[4], base):
        ok(await client.get(f"/v1/repos/exp/commits/{kept['id']}"))
    assert ok(await client.get(f"/v1/repos/exp/commits/{made[3]['id']}"))["parent"] == made[0]["id"]
    assert report["chunks"] == 2


async def _chunk_use(ctx: Context) -> dict[str, int | None]:
    """Per stored chunk: the bytes of it file records use (None: a file uses all of it)."""
    used: dict[str, int | None] = {
        key.rpartition("/")[2]: 0 async for key in ctx.objects.list_keys("chunks/")
    }
    async with ctx.db.session(write=False) as session:
        for digest, size, blob in (
            await session.execute(select(FileRow.hash, FileRow.size, FileRow.chunks))
        ).all():
            stored = ChunkedFile.decode(digest, size, blob)
            for chunk, length in stored.chunks:
                before = used.get(chunk, 0)
                if len(stored.chunks) == 1 and size < length and before is not None:
                    used[chunk] = before + size
                else:
                    used[chunk] = None
    return used


async def test_sparse_packs_are_compacted_and_their_unused_bytes_reclaimed(
    gc_env: tuple[Context, httpx.AsyncClient],
) -> None:
    ctx, client = gc_env
    # Two batches of ten small files, each stored as one pack; another repo then uses two
    # files of the first batch and six of the second, and the first repo is deleted.
    first = {f"/one/{i}": os.urandom(2000) for i in range(10)}
    second = {f"/two/{i}": os.urandom(3000) for i in range(10)}
    ok(await client.post("/v1/repos", json={"name": "batches"}), 201)
    for batch in (first, second):
        ok(await client.post("/v1/repos/batches/commits", json={}), 201)
        ok(
            await client.post("/v1/repos/batches/commits/master/files", content=tar_of(batch)),
            201,
        )
        ok(await client.post("/v1/repos/batches/commits/master/finish"))
    used = dict(list(first.items())[:2]) | dict(list(second.items())[:6])
    ok(await client.post("/v1/repos", json={"name": "keep"}), 201)
    ok(await client.post("/v1/repos/keep/commits", json={}), 201)
    ok(await client.post("/v1/repos/keep/commits/master/files", content=tar_of(used)), 201)
    ok(await client.post("/v1/repos/keep/commits/master/finish"))
    ok(await client.delete("/v1/repos/batches"), 204)
    plain = await gc(client, compact_below=0)  # the deleted repo's file records go, no more
    assert (plain["packs_compacted"], plain["chunks"]) == (0, 0)
    packs_before = await _chunk_use(ctx)
    assert sorted(packs_before.values()) == [2 * 2000, 6 * 3000]  # 20% and 60% used

    dry = await gc(client, dry_run="true")
    # Only the pack below the default 50% is compacted; eight unused files of 2,000 bytes.
    assert (dry["packs_compacted"], dry["pack_bytes_reclaimed"]) == (1, 8 * 2000)
    assert await _chunk_use(ctx) == packs_before  # a dry run moves nothing

    done = await gc(client)
    assert (done["packs_compacted"], done["pack_bytes_reclaimed"]) == (1, 8 * 2000)
    after = await _chunk_use(ctx)
    sparse = next(k for k, v in packs_before.items() if v == 2 * 2000)
    # No file uses the old pack any more (its two files live in a new one), but it is still
    # stored, for a read that found the old record just before: the next collection deletes it.
    assert after.pop(sparse) == 0
    assert sorted(after.values()) == [2 * 2000, 6 * 3000]
    stored = {
        key.rpartition("/")[2]: await ctx.objects.get(key)
        async for key in ctx.objects.list_keys("chunks/")
    }
    new_pack = next(k for k, v in after.items() if v == 2 * 2000)
    assert len(stored[new_pack]) == 2 * 2000  # nothing unused in it
    assert done["referenced_bytes"] == 2 * 2000 + 10 * 3000 + 10 * 2000
    for path, data in used.items():
        assert await read(client, "keep", "master", path) == data
    again = await gc(client)
    assert (again["packs_compacted"], again["chunks"], again["bytes"]) == (0, 1, 10 * 2000)
    with pytest.raises(NotFound):
        await ctx.objects.get(chunk_key(sparse))
    # Compacting every pack with anything unused takes the other one too.
    full = ok(await client.post("/v1/gc", params={"grace_seconds": 0, "compact_below": 1}))
    assert (full["packs_compacted"], full["pack_bytes_reclaimed"]) == (1, 4 * 3000)
    # The emptied pack (no use left) waits for the next collection.
    assert sorted((await _chunk_use(ctx)).values()) == [0, 2 * 2000, 6 * 3000]
    for path, data in used.items():
        assert await read(client, "keep", "master", path) == data


# --- the property: uploads, deletes and collection interleaved lose nothing referenced ------

OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("put"), st.integers(0, 2), st.lists(st.integers(0, 6), min_size=1, max_size=4)
        ),
        st.tuples(
            st.just("put_during_gc"),
            st.integers(0, 2),
            st.lists(st.integers(0, 6), min_size=1, max_size=4),
        ),
        st.tuples(st.just("delete_repo"), st.integers(0, 2), st.just([])),
        st.tuples(st.just("delete_head"), st.integers(0, 2), st.just([])),
        st.tuples(st.just("gc"), st.integers(0, 2), st.just([])),
    ),
    min_size=3,
    max_size=10,
)

# A few contents, some multi-chunk, so that repos and commits share them.
CONTENTS = [os.urandom(n) for n in (10, 900, 5000, TEST_CHUNK_SIZE + 3, 2 * TEST_CHUNK_SIZE, 70, 3)]


async def _put(client: httpx.AsyncClient, repo: str, picks: list[int]) -> dict[str, bytes]:
    files = {f"/f{i}-{n}": CONTENTS[n] for i, n in enumerate(picks)}
    if (await client.get(f"/v1/repos/{repo}")).status_code == 404:
        ok(await client.post("/v1/repos", json={"name": repo}), 201)
    for _ in range(5):  # a put refused because collection reclaimed what it relied on is retried
        ok(await client.post(f"/v1/repos/{repo}/commits", json={}), 201)
        small = {p: d for p, d in files.items() if len(d) < TEST_CHUNK_SIZE}
        response = (
            await client.post(f"/v1/repos/{repo}/commits/master/files", content=tar_of(small))
            if small
            else None
        )
        if response is not None and response.status_code == 409 and "reclaimed" in response.text:
            ok(await client.delete(f"/v1/repos/{repo}/commits/master"), 204)
            continue
        if response is not None:
            ok(response, 201)
        for path, data in files.items():
            if len(data) >= TEST_CHUNK_SIZE:
                ok(
                    await client.put(
                        f"/v1/repos/{repo}/commits/master/file", params={"path": path}, content=data
                    ),
                    201,
                )
        ok(await client.post(f"/v1/repos/{repo}/commits/master/finish"))
        return files
    raise AssertionError("a put was refused five times in a row")


async def _check(
    ctx: Context, client: httpx.AsyncClient, model: dict[str, list[tuple[str, dict[str, bytes]]]]
) -> None:
    for repo, commits in model.items():
        for commit_id, files in commits:
            for path, data in files.items():
                assert await read(client, repo, commit_id, path) == data, (repo, commit_id, path)


async def _interleave(
    ctx: Context, client: httpx.AsyncClient, ops: list[tuple[str, int, list[int]]]
) -> None:
    model: dict[str, list[tuple[str, dict[str, bytes]]]] = {}
    for op, index, picks in ops:
        repo = f"r{index}"
        if op == "put":
            files = await _put(client, repo, picks)
            previous = model.get(repo, [])[-1][1] if model.get(repo) else {}
            head = ok(await client.get(f"/v1/repos/{repo}/commits/master"))["id"]
            model.setdefault(repo, []).append((head, previous | files))
        elif op == "put_during_gc":
            # A collection that spares young chunks (as the service's grace period does) runs
            # while the upload is under way.
            collect = asyncio.create_task(
                ctx.collector.run(grace=timedelta(minutes=10), compact_below=1.0)
            )
            files = await _put(client, repo, picks)
            await collect
            previous = model.get(repo, [])[-1][1] if model.get(repo) else {}
            head = ok(await client.get(f"/v1/repos/{repo}/commits/master"))["id"]
            model.setdefault(repo, []).append((head, previous | files))
        elif op == "delete_repo" and repo in model:
            ok(await client.delete(f"/v1/repos/{repo}"), 204)
            del model[repo]
        elif op == "delete_head" and model.get(repo):
            head, _ = model[repo].pop()
            ok(await client.post(f"/v1/repos/{repo}/commits/{head}/delete"))
        elif op == "gc":  # without compaction, with the default, or of any sparse pack
            await ctx.collector.run(grace=timedelta(0), compact_below=(0.0, 0.5, 1.0)[index])
        await _check(ctx, client, model)
    # At rest, a collection without grace that compacts every sparse pack, and the next that
    # deletes the packs it emptied, leave exactly the chunks the remaining files use, and no
    # unused byte in any of them.
    await ctx.collector.run(grace=timedelta(0), compact_below=1.0)
    await ctx.collector.run(grace=timedelta(0), compact_below=1.0)
    await _check(ctx, client, model)
    for chunk, used in (await _chunk_use(ctx)).items():
        if used is not None:
            assert used == len(await ctx.objects.get(chunk_key(chunk))), chunk
    async with ctx.db.session(write=False) as session:
        referenced = {
            h
            for blob in await session.scalars(select(FileRow.chunks))
            for h, _ in ChunkedFile.decode_chunks(blob)
        }
    stored = {key.rpartition("/")[2] async for key in ctx.objects.list_keys("chunks/")}
    assert stored == referenced


def _run_property(
    kind: str,
    tmp_factory: Callable[[], Path],
    servers: dict[str, Any],
    ops: list[tuple[str, int, list[int]]],
) -> None:
    async def main() -> None:
        async with isolated(kind, tmp_factory(), **servers) as (ctx, client):
            await _interleave(ctx, client, ops)

    asyncio.run(main())


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=OPS)
def test_interleaved_uploads_deletes_and_collection_lose_nothing_embedded(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int, list[int]]]
) -> None:
    _run_property("embedded", lambda: tmp_path_factory.mktemp("gcprop"), {}, ops)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=OPS)
def test_interleaved_uploads_deletes_and_collection_lose_nothing_postgres_s3(
    tmp_path_factory: pytest.TempPathFactory,
    postgres: PostgresServer,
    s3: S3Server,
    ops: list[tuple[str, int, list[int]]],
) -> None:
    _run_property(
        "real", lambda: tmp_path_factory.mktemp("gcprop"), {"postgres": postgres, "s3": s3}, ops
    )
