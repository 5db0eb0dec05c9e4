from __future__ import annotations

import os
import uuid

import httpx
import pytest

from tests.conftest import TEST_CHUNK_SIZE
from tests.repo.helpers import commit_files, error, ok, read, tar_of
from tusk_repo.context import Context


@pytest.fixture
async def repo(client: httpx.AsyncClient) -> str:
    ok(await client.post("/v1/repos", json={"name": "files"}), 201)
    return "files"


async def test_put_get_large_multi_chunk_file(client: httpx.AsyncClient, repo: str) -> None:
    data = os.urandom(TEST_CHUNK_SIZE * 5 + 123)

    async def body():  # streamed in pieces that do not line up with chunks
        for i in range(0, len(data), 50_000):
            yield data[i : i + 50_000]

    ok(await client.post(f"/v1/repos/{repo}/commits", json={}), 201)
    put = ok(
        await client.put(
            f"/v1/repos/{repo}/commits/master/file", params={"path": "/big.bin"}, content=body()
        ),
        201,
    )
    assert put["files"][0]["size_bytes"] == len(data)
    ok(await client.post(f"/v1/repos/{repo}/commits/master/finish"))
    assert await read(client, repo, "master", "/big.bin") == data


async def test_ranged_get(client: httpx.AsyncClient, repo: str) -> None:
    data = os.urandom(TEST_CHUNK_SIZE * 2 + 10)
    await commit_files(client, repo, {"/r": data})
    url = f"/v1/repos/{repo}/commits/master/file"
    for header, expected in [
        ("bytes=0-9", data[:10]),
        (
            f"bytes={TEST_CHUNK_SIZE - 5}-{TEST_CHUNK_SIZE + 4}",
            data[TEST_CHUNK_SIZE - 5 : TEST_CHUNK_SIZE + 5],
        ),
        ("bytes=-7", data[-7:]),
        (f"bytes={len(data) - 3}-", data[-3:]),
        (f"bytes=5-{len(data) + 100}", data[5:]),
    ]:
        response = await client.get(url, params={"path": "/r"}, headers={"Range": header})
        assert response.status_code == 206, (header, response.text)
        assert response.content == expected, header
        assert response.headers["content-range"].endswith(f"/{len(data)}")
    for bad in (f"bytes={len(data)}-", "bytes=9-3", "lines=1-2", "bytes=1-2,4-5"):
        error(await client.get(url, params={"path": "/r"}, headers={"Range": bad}), 416)


async def test_empty_file(client: httpx.AsyncClient, repo: str) -> None:
    await commit_files(client, repo, {"/empty": b""})
    assert await read(client, repo, "master", "/empty") == b""
    stat = ok(await client.get(f"/v1/repos/{repo}/commits/master/stat", params={"path": "/empty"}))
    assert stat["size_bytes"] == 0


async def test_batch_put(client: httpx.AsyncClient, repo: str) -> None:
    files = {f"dir{i % 3}/f{i}.txt": f"content {i}".encode() for i in range(50)}
    commit = ok(await client.post(f"/v1/repos/{repo}/commits", json={}), 201)
    put = ok(
        await client.post(
            f"/v1/repos/{repo}/commits/{commit['id']}/files",
            params={"prefix": "/in"},
            content=tar_of(files),
        ),
        201,
    )
    assert len(put["files"]) == 50
    finished = ok(await client.post(f"/v1/repos/{repo}/commits/master/finish"))
    assert finished["file_count"] == 50
    assert await read(client, repo, "master", "/in/dir1/f4.txt") == b"content 4"


async def test_batch_packs_small_files_and_skips_stored_contents(
    client: httpx.AsyncClient, repo: str, repo_ctx: Context
) -> None:
    tag = uuid.uuid4().hex  # contents no other test has stored
    files = {f"f{i}": f"{tag} {i}".encode() for i in range(200)}
    before = {k async for k in repo_ctx.objects.list_keys("chunks/")}
    ok(await client.post(f"/v1/repos/{repo}/commits", json={}), 201)
    url = f"/v1/repos/{repo}/commits/master/files"
    ok(await client.post(url, content=tar_of(files)), 201)
    packed = {k async for k in repo_ctx.objects.list_keys("chunks/")} - before
    assert len(packed) == 1  # 200 small files in one object
    # The same files again plus a new one: only the new one is written.
    again = tar_of(files | {"new": tag.encode()})
    ok(await client.post(url, params={"prefix": "/again"}, content=again), 201)
    written = {k async for k in repo_ctx.objects.list_keys("chunks/")} - before - packed
    assert len(written) == 1
    ok(await client.post(f"/v1/repos/{repo}/commits/master/finish"))
    assert await read(client, repo, "master", "/f7") == f"{tag} 7".encode()
    assert await read(client, repo, "master", "/again/f199") == f"{tag} 199".encode()
    assert await read(client, repo, "master", "/again/new") == tag.encode()


async def test_batch_refuses_traversal_and_links(client: httpx.AsyncClient, repo: str) -> None:
    import io
    import tarfile

    ok(await client.post(f"/v1/repos/{repo}/commits", json={}), 201)
    url = f"/v1/repos/{repo}/commits/master/files"
    error(await client.post(url, content=tar_of({"../../etc/x": b"1"})), 400, "..")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as archive:
        link = tarfile.TarInfo("evil")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        archive.addfile(link)
    error(await client.post(url, content=buf.getvalue()), 400, "not a regular file")
    error(await client.post(url, content=b"not a tar at all"), 400, "tar")
    # Nothing from the refused batches is in the commit.
    finished = ok(await client.post(f"/v1/repos/{repo}/commits/master/finish"))
    assert finished["file_count"] == 0


@pytest.mark.parametrize("path", ["/../x", "../x", "/a/../../b", "/a\x00b", "/a\nb", "/", ""])
async def test_bad_paths_are_400(client: httpx.AsyncClient, repo: str, path: str) -> None:
    ok(await client.post(f"/v1/repos/{repo}/commits", json={}), 201)
    response = await client.put(
        f"/v1/repos/{repo}/commits/master/file", params={"path": path}, content=b"x"
    )
    assert response.status_code == 400, response.text


async def test_oversized_upload_is_413_and_leaves_nothing(repo_ctx: Context, repo: str) -> None:
    from dataclasses import replace

    from tusk_repo.app import create_app

    small = replace(
        repo_ctx, settings=repo_ctx.settings.model_copy(update={"max_file_bytes": 1000})
    )
    transport = httpx.ASGITransport(app=create_app(context=small))
    async with httpx.AsyncClient(transport=transport, base_url="http://repo") as client:
        ok(await client.post(f"/v1/repos/{repo}/commits", json={}), 201)
        url = f"/v1/repos/{repo}/commits/master/file"
        error(await client.put(url, params={"path": "/big"}, content=b"x" * 1001), 413, "limit")

        async def unsized():
            for _ in range(3):
                yield b"x" * 600

        error(await client.put(url, params={"path": "/big2"}, content=unsized()), 413, "limit")
        finished = ok(await client.post(f"/v1/repos/{repo}/commits/master/finish"))
        assert finished["file_count"] == 0


async def test_cut_off_upload_writes_nothing(client: httpx.AsyncClient, repo: str) -> None:
    ok(await client.post(f"/v1/repos/{repo}/commits", json={}), 201)

    async def short():
        yield b"only part"

    response = await client.put(
        f"/v1/repos/{repo}/commits/master/file",
        params={"path": "/cut"},
        content=short(),
        headers={"Content-Length": "1000"},
    )
    error(response, 400, "9 of 1000")
    finished = ok(await client.post(f"/v1/repos/{repo}/commits/master/finish"))
    assert finished["file_count"] == 0


async def test_list_stat_glob(client: httpx.AsyncClient, repo: str) -> None:
    await commit_files(
        client,
        repo,
        {
            "/data/a.csv": b"1",
            "/data/b.csv": b"22",
            "/data/sub/c.json": b"333",
            "/top.txt": b"t",
        },
    )
    base = f"/v1/repos/{repo}/commits/master"
    listing = ok(await client.get(f"{base}/list", params={"path": "/data"}))
    assert [(f["path"], f["type"]) for f in listing["items"]] == [
        ("/data/a.csv", "file"),
        ("/data/b.csv", "file"),
        ("/data/sub", "dir"),
    ]
    paged = ok(await client.get(f"{base}/list", params={"path": "/data", "limit": 2}))
    assert paged["next_cursor"] == "b.csv"
    rest = ok(await client.get(f"{base}/list", params={"path": "/data", "cursor": "b.csv"}))
    assert [f["path"] for f in rest["items"]] == ["/data/sub"]
    root = ok(await client.get(f"{base}/stat", params={"path": "/"}))
    assert (root["type"], root["file_count"], root["size_bytes"]) == ("dir", 4, 7)
    sub = ok(await client.get(f"{base}/stat", params={"path": "/data/sub"}))
    assert (sub["type"], sub["file_count"]) == ("dir", 1)
    error(await client.get(f"{base}/stat", params={"path": "/nope"}), 404, "/nope")
    error(await client.get(f"{base}/list", params={"path": "/nope"}), 404)
    error(await client.get(f"{base}/file", params={"path": "/data"}), 400, "directory")

    async def glob(pattern: str) -> list[str]:
        return [
            f["path"] for f in ok(await client.get(f"{base}/glob", params={"pattern": pattern}))
        ]

    assert await glob("/") == ["/"]
    assert await glob("/*") == ["/data", "/top.txt"]
    assert await glob("/data/*.csv") == ["/data/a.csv", "/data/b.csv"]
    assert await glob("/**/*.json") == ["/data/sub/c.json"]
    assert await glob("/**") == [
        "/",
        "/data",
        "/data/a.csv",
        "/data/b.csv",
        "/data/sub",
        "/data/sub/c.json",
        "/top.txt",
    ]
    assert await glob("/data/?.csv") == ["/data/a.csv", "/data/b.csv"]
    assert await glob("/nothing/*") == []


async def test_delete_and_diff_and_history(client: httpx.AsyncClient, repo: str) -> None:
    first = await commit_files(client, repo, {"/d/a": b"1", "/d/b": b"2", "/e/c": b"3"})
    second = ok(await client.post(f"/v1/repos/{repo}/commits", json={}), 201)
    url = f"/v1/repos/{repo}/commits/{second['id']}"
    assert (await client.delete(f"{url}/file", params={"path": "/d"})).status_code == 204
    ok(await client.put(f"{url}/file", params={"path": "/d/new"}, content=b"n"), 201)
    ok(await client.put(f"{url}/file", params={"path": "/e/c"}, content=b"33"), 201)
    error(await client.delete(f"{url}/file", params={"path": "/missing"}), 404)
    # An open commit can be read by id: it shows the staged changes.
    staged = ok(await client.get(f"{url}/list", params={"path": "/d"}))
    assert [f["path"] for f in staged["items"]] == ["/d/new"]
    ok(await client.post(f"{url}/finish"))
    diff = ok(await client.get(f"/v1/repos/{repo}/commits/master/diff"))
    assert diff["from_commit"] == first["id"]
    assert [(c["path"], c["change"]) for c in diff["changes"]] == [
        ("/d/a", "deleted"),
        ("/d/b", "deleted"),
        ("/d/new", "added"),
        ("/e/c", "modified"),
    ]
    since_nothing = ok(await client.get(f"/v1/repos/{repo}/commits/{first['id']}/diff"))
    assert since_nothing["from_commit"] is None
    assert len(since_nothing["changes"]) == 3
    history = ok(
        await client.get(f"/v1/repos/{repo}/commits/master/history", params={"path": "/e/c"})
    )
    assert [(h["commit"], h["change"]) for h in history] == [
        (second["id"], "modified"),
        (first["id"], "added"),
    ]
    gone = ok(await client.get(f"/v1/repos/{repo}/commits/master/history", params={"path": "/d/a"}))
    assert [h["change"] for h in gone] == ["deleted", "added"]


async def test_file_and_directory_conflicts(client: httpx.AsyncClient, repo: str) -> None:
    await commit_files(client, repo, {"/f": b"file", "/dir/x": b"x"})
    commit = ok(await client.post(f"/v1/repos/{repo}/commits", json={}), 201)
    url = f"/v1/repos/{repo}/commits/{commit['id']}"
    ok(await client.put(f"{url}/file", params={"path": "/f/under"}, content=b"u"), 201)
    error(await client.post(f"{url}/finish"), 409, "/f", "is a file")
    # The commit stays open and can be mended: delete the file, then finish.
    assert (await client.delete(f"{url}/file", params={"path": "/f"})).status_code == 204
    ok(await client.put(f"{url}/file", params={"path": "/f/under"}, content=b"u"), 201)
    finished = ok(await client.post(f"{url}/finish"))
    assert finished["file_count"] == 2
    assert await read(client, repo, "master", "/f/under") == b"u"


async def test_content_is_deduplicated(
    client: httpx.AsyncClient, repo: str, repo_ctx: Context
) -> None:
    data = os.urandom(TEST_CHUNK_SIZE * 3)
    ok(await client.post("/v1/repos", json={"name": "other"}), 201)
    await commit_files(client, repo, {"/one": data, "/two": data})
    await commit_files(client, "other", {"/three": data})
    keys = [k async for k in repo_ctx.objects.list_keys("chunks/")]
    stat = ok(await client.get(f"/v1/repos/{repo}/commits/master/stat", params={"path": "/one"}))
    from sqlalchemy import select

    from tusk.objectstore.chunks import ChunkedFile, chunk_key
    from tusk_repo.tables import FileRow

    async with repo_ctx.db.session(write=False) as session:
        blob = await session.scalar(select(FileRow.chunks).where(FileRow.hash == stat["hash"]))
    assert blob is not None
    mine = {chunk_key(h) for h, _ in ChunkedFile.decode_chunks(blob)}
    assert len(mine) == 3
    assert mine <= set(keys)
    assert sum(1 for k in keys if k in mine) == 3  # three files, one copy of each chunk


async def test_child_commit_shares_parent_tree(
    client: httpx.AsyncClient, repo: str, repo_ctx: Context
) -> None:
    from sqlalchemy import func, select

    from tusk_repo.tables import TreeRow

    await commit_files(client, repo, {f"/big/{i}": b"x" for i in range(200)} | {"/small/a": b"y"})
    async with repo_ctx.db.session(write=False) as session:
        before = await session.scalar(select(func.count()).select_from(TreeRow))
    await commit_files(client, repo, {"/small/b": b"z"})
    async with repo_ctx.db.session(write=False) as session:
        after = await session.scalar(select(func.count()).select_from(TreeRow))
    # Only the root and /small were rewritten; /big (200 entries) is shared.
    assert after - before == 2


async def test_link_by_content_hash(client: httpx.AsyncClient, repo: str) -> None:
    first = await commit_files(client, repo, {"/src/a": b"alpha", "/src/b": b"beta"})
    stat = ok(await client.get(f"/v1/repos/{repo}/commits/master/stat", params={"path": "/src/a"}))
    ok(await client.post(f"/v1/repos/{repo}/commits", json={}), 201)
    url = f"/v1/repos/{repo}/commits/master/links"
    linked = ok(
        await client.post(url, json={"files": [{"path": "/copy/a", "hash": stat["hash"]}]}), 201
    )
    assert linked["files"][0]["size_bytes"] == 5
    unknown = "0" * 64
    error(await client.post(url, json={"files": [{"path": "/x", "hash": unknown}]}), 404, unknown)
    error(await client.post(url, json={"files": [{"path": "/../x", "hash": stat["hash"]}]}), 400)
    finished = ok(await client.post(f"/v1/repos/{repo}/commits/master/finish"))
    assert finished["parent"] == first["id"]
    assert await read(client, repo, "master", "/copy/a") == b"alpha"
    assert finished["file_count"] == 3


async def test_reading_one_path_of_an_open_commit_sees_every_staged_change_that_reaches_it(
    client: httpx.AsyncClient, repo: str
) -> None:
    """Reads of one path apply only the staged changes on it, beneath it or on its ancestors;
    what they answer must match the whole merged tree (a glob of everything)."""
    await commit_files(
        client, repo, {"/a/x": b"1", "/a/y": b"2", "/b/z": b"3", "/c": b"4", "/dX1/g": b"5"}
    )
    commit = ok(await client.post(f"/v1/repos/{repo}/commits", json={}), 201)["id"]
    url = f"/v1/repos/{repo}/commits/{commit}"
    for path in ("/a", "/c"):
        assert (await client.delete(f"{url}/file", params={"path": path})).status_code == 204
    # "_" and "%" in a path must not act as wildcards when picking the changes beneath it.
    for path in ("/a/new", "/b/z2", "/c/d", "/d_1/e", "/d%1/h", "/dX1/f"):
        ok(await client.put(f"{url}/file", params={"path": path}, content=path.encode()), 201)
    everything = {
        f["path"]: f for f in ok(await client.get(f"{url}/glob", params={"pattern": "/**"}))
    }
    assert set(everything) == {
        "/", "/a", "/a/new", "/b", "/b/z", "/b/z2", "/c", "/c/d", "/d%1", "/d%1/h", "/d_1",
        "/d_1/e", "/dX1", "/dX1/f", "/dX1/g",
    }  # fmt: skip
    for path, info in everything.items():
        stat = ok(await client.get(f"{url}/stat", params={"path": path}))
        assert (stat["type"], stat["hash"], stat["size_bytes"]) == (
            info["type"], info["hash"], info["size_bytes"]
        ), path  # fmt: skip
        if info["type"] == "dir":
            listed = ok(await client.get(f"{url}/list", params={"path": path}))["items"]
            expected = sorted(
                p for p in everything if p != "/" and (p.rpartition("/")[0] or "/") == path
            )
            assert [f["path"] for f in listed] == expected, path
        else:
            kept = {"/b/z": b"3", "/dX1/g": b"5"}  # from the parent commit
            assert await read(client, repo, commit, path) == kept.get(path, path.encode())
    for gone in ("/a/x", "/a/y", "/c/x", "/d_1/f"):
        error(await client.get(f"{url}/stat", params={"path": gone}), 404)
