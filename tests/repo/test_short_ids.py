"""A unique prefix of 8 or more characters of a commit id names the commit, as the CLI prints
them; a branch of the same name wins, as in git."""

from __future__ import annotations

import httpx

from tests.repo.helpers import commit_files, error, ok


async def test_a_commit_prefix_names_the_commit(client: httpx.AsyncClient) -> None:
    ok(await client.post("/v1/repos", json={"name": "shorts"}), 201)
    first = await commit_files(client, "shorts", {"/a.txt": b"A"})
    second = await commit_files(client, "shorts", {"/b.txt": b"B"})
    for length in (8, 12, 31):
        prefix = first["id"][:length]
        assert ok(await client.get(f"/v1/repos/shorts/commits/{prefix}"))["id"] == first["id"]
    found = await client.get(
        f"/v1/repos/shorts/commits/{second['id'][:8]}/file", params={"path": "/b.txt"}
    )
    assert found.content == b"B"
    parent = ok(await client.get(f"/v1/repos/shorts/commits/{second['id'][:8]}%5E"))
    assert parent["id"] == first["id"]
    # Shorter than 8 characters is a branch name, and there is none.
    error(await client.get(f"/v1/repos/shorts/commits/{first['id'][:7]}"), 404)


async def test_an_open_commit_takes_writes_by_prefix(client: httpx.AsyncClient) -> None:
    ok(await client.post("/v1/repos", json={"name": "shortw"}), 201)
    opened = ok(await client.post("/v1/repos/shortw/commits", json={}), 201)
    ok(
        await client.put(
            f"/v1/repos/shortw/commits/{opened['id'][:8]}/file",
            params={"path": "/x.txt"},
            content=b"X",
        ),
        201,
    )
    finished = ok(await client.post(f"/v1/repos/shortw/commits/{opened['id'][:10]}/finish"))
    assert finished["id"] == opened["id"]
    assert finished["file_count"] == 1


async def test_a_branch_named_like_a_prefix_wins(client: httpx.AsyncClient) -> None:
    ok(await client.post("/v1/repos", json={"name": "shortb"}), 201)
    first = await commit_files(client, "shortb", {"/a.txt": b"A"})
    await commit_files(client, "shortb", {"/b.txt": b"B"})
    name = first["id"][:8]
    ok(await client.post("/v1/repos/shortb/branches", json={"name": name, "head": "master"}), 201)
    branch_head = ok(await client.get(f"/v1/repos/shortb/commits/{name}"))
    assert branch_head["id"] != first["id"]
