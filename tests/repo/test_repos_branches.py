from __future__ import annotations

import httpx

from tests.repo.helpers import commit_files, error, ok


async def test_create_list_inspect_delete_repo(client: httpx.AsyncClient) -> None:
    created = ok(await client.post("/v1/repos", json={"name": "raw", "description": "d"}), 201)
    assert created["name"] == "raw"
    assert created["branches"] == []
    assert [r["name"] for r in ok(await client.get("/v1/repos"))] == ["raw"]
    await commit_files(client, "raw", {"/a": b"12345"})
    info = ok(await client.get("/v1/repos/raw"))
    assert info["branches"] == ["master"]
    assert info["size_bytes"] == 5
    assert info["commit_count"] == 1
    assert (await client.delete("/v1/repos/raw")).status_code == 204
    error(await client.get("/v1/repos/raw"), 404, "raw")


async def test_repo_names_are_validated(client: httpx.AsyncClient) -> None:
    for bad in ["", "-x", "a b", "x" * 64, "dots.not", "../x", "ü"]:
        response = await client.post("/v1/repos", json={"name": bad})
        assert response.status_code in (400, 404, 405), (bad, response.text)
        assert response.status_code != 500


async def test_duplicate_repo_is_409(client: httpx.AsyncClient) -> None:
    ok(await client.post("/v1/repos", json={"name": "dup"}), 201)
    error(await client.post("/v1/repos", json={"name": "dup"}), 409, "already exists")


async def test_unknown_repo_is_404(client: httpx.AsyncClient) -> None:
    error(await client.get("/v1/repos/ghost"), 404, "ghost")
    error(await client.post("/v1/repos/ghost/commits", json={}), 404, "ghost")
    error(await client.get("/v1/repos/ghost/commits/master/list"), 404, "ghost")


async def test_delete_refused_while_in_provenance(client: httpx.AsyncClient) -> None:
    ok(await client.post("/v1/repos", json={"name": "src"}), 201)
    ok(await client.post("/v1/repos", json={"name": "out"}), 201)
    source = await commit_files(client, "src", {"/x": b"1"})
    await commit_files(
        client, "out", {"/y": b"2"}, provenance=[{"repo": "src", "commit": source["id"]}]
    )
    error(await client.delete("/v1/repos/src"), 409, "provenance", "out")
    assert (await client.delete("/v1/repos/src", params={"force": "true"})).status_code == 204


async def test_branches(client: httpx.AsyncClient) -> None:
    ok(await client.post("/v1/repos", json={"name": "b"}), 201)
    first = await commit_files(client, "b", {"/f": b"1"})
    second = await commit_files(client, "b", {"/f": b"2"})
    dev = ok(
        await client.post("/v1/repos/b/branches", json={"name": "dev", "head": "master^"}), 201
    )
    assert dev["head"] == first["id"]
    empty = ok(await client.post("/v1/repos/b/branches", json={"name": "empty"}), 201)
    assert empty["head"] is None
    assert [b["name"] for b in ok(await client.get("/v1/repos/b/branches"))] == [
        "dev",
        "empty",
        "master",
    ]
    moved = ok(await client.put("/v1/repos/b/branches/dev", json={"head": second["id"]}))
    assert moved["head"] == second["id"]
    error(await client.post("/v1/repos/b/branches", json={"name": "dev"}), 409, "already exists")
    error(
        await client.post("/v1/repos/b/branches", json={"name": "x", "head": "nope"}), 404, "nope"
    )
    error(await client.post("/v1/repos/b/branches", json={"name": "a" * 32}), 400, "commit id")
    assert (await client.delete("/v1/repos/b/branches/dev")).status_code == 204
    error(await client.get("/v1/repos/b/branches/dev"), 404, "dev")
    # The commits stay reachable by id after their branch is gone.
    ok(await client.get(f"/v1/repos/b/commits/{second['id']}"))


async def test_branch_with_open_commit_cannot_be_deleted(client: httpx.AsyncClient) -> None:
    ok(await client.post("/v1/repos", json={"name": "o"}), 201)
    ok(await client.post("/v1/repos/o/commits", json={"branch": "wip"}), 201)
    error(await client.delete("/v1/repos/o/branches/wip"), 409, "open commit")
