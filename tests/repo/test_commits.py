from __future__ import annotations

import asyncio
import uuid

import httpx

from tests.repo.helpers import commit_files, error, ok, read


async def _repo(client: httpx.AsyncClient, name: str = "data") -> None:
    ok(await client.post("/v1/repos", json={"name": name}), 201)


async def test_commit_lifecycle_and_parentage(client: httpx.AsyncClient) -> None:
    await _repo(client)
    c1 = ok(await client.post("/v1/repos/data/commits", json={"description": "first"}), 201)
    assert c1["state"] == "open"
    assert c1["parent"] is None
    assert c1["global_id"] == c1["id"]
    # Readers of the branch see no commit until one is finished.
    error(await client.get("/v1/repos/data/commits/master"), 404, "no finished commit", c1["id"])
    ok(
        await client.put(
            "/v1/repos/data/commits/master/file", params={"path": "/a.txt"}, content=b"A"
        ),
        201,
    )
    f1 = ok(await client.post("/v1/repos/data/commits/master/finish"))
    assert f1["state"] == "finished"
    assert f1["file_count"] == 1
    assert f1["size_bytes"] == 1
    assert f1["finished_at"] is not None
    c2 = await commit_files(client, "data", {"/b.txt": b"BB"})
    assert c2["parent"] == f1["id"]
    assert c2["file_count"] == 2
    assert ok(await client.get("/v1/repos/data/commits/master"))["id"] == c2["id"]
    assert ok(await client.get("/v1/repos/data/commits/master%5E"))["id"] == f1["id"]
    assert ok(await client.get("/v1/repos/data/commits/master~1"))["id"] == f1["id"]
    error(await client.get("/v1/repos/data/commits/master%5E2"), 404, "ancestor")
    error(await client.get("/v1/repos/data/commits/master%5E%5E%5E"), 404)


async def test_one_open_commit_per_branch(client: httpx.AsyncClient) -> None:
    await _repo(client)
    first = ok(await client.post("/v1/repos/data/commits", json={}), 201)
    error(await client.post("/v1/repos/data/commits", json={}), 409, first["id"])
    # Another branch is independent.
    ok(await client.post("/v1/repos/data/commits", json={"branch": "other"}), 201)


async def test_racing_starts_open_exactly_one_commit(client: httpx.AsyncClient) -> None:
    await _repo(client)
    responses = await asyncio.gather(
        *(client.post("/v1/repos/data/commits", json={}) for _ in range(8))
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] + [409] * 7, [r.text for r in responses]


async def test_writing_to_finished_commit_is_refused(client: httpx.AsyncClient) -> None:
    await _repo(client)
    done = await commit_files(client, "data", {"/x": b"1"})
    error(
        await client.put(
            f"/v1/repos/data/commits/{done['id']}/file", params={"path": "/y"}, content=b"2"
        ),
        409,
        "finished",
    )
    error(await client.post(f"/v1/repos/data/commits/{done['id']}/finish"), 409, "finished")
    error(
        await client.put("/v1/repos/data/commits/master/file", params={"path": "/y"}, content=b"2"),
        409,
        "no open commit",
    )
    error(
        await client.put(
            "/v1/repos/data/commits/master%5E/file", params={"path": "/y"}, content=b"2"
        ),
        400,
        "ancestor",
    )


async def test_abandon(client: httpx.AsyncClient) -> None:
    await _repo(client)
    base = await commit_files(client, "data", {"/keep": b"k"})
    open_ = ok(await client.post("/v1/repos/data/commits", json={}), 201)
    ok(
        await client.put(
            "/v1/repos/data/commits/master/file", params={"path": "/drop"}, content=b"d"
        ),
        201,
    )
    assert (await client.delete(f"/v1/repos/data/commits/{open_['id']}")).status_code == 204
    error(await client.get(f"/v1/repos/data/commits/{open_['id']}"), 404)
    assert ok(await client.get("/v1/repos/data/commits/master"))["id"] == base["id"]
    error(await client.delete(f"/v1/repos/data/commits/{base['id']}"), 409, "finished")
    # The branch can take a new commit at once.
    ok(await client.post("/v1/repos/data/commits", json={}), 201)


async def test_provenance_and_global_id(client: httpx.AsyncClient) -> None:
    await _repo(client, "inp")
    await _repo(client, "out")
    src = await commit_files(client, "inp", {"/x": b"1"})
    gid = uuid.uuid4().hex
    started = ok(
        await client.post(
            "/v1/repos/out/commits",
            json={"provenance": [{"repo": "inp", "commit": "master"}], "global_id": gid},
        ),
        201,
    )
    assert started["provenance"] == [{"repo": "inp", "commit": src["id"]}]
    assert started["global_id"] == gid
    error(
        await client.post(
            "/v1/repos/out/commits",
            json={"branch": "x", "provenance": [{"repo": "nope", "commit": "master"}]},
        ),
        404,
        "nope",
    )
    error(await client.post("/v1/repos/out/commits", json={"branch": "y", "global_id": "zz"}), 400)
    ok(await client.post("/v1/repos/out/commits/master/finish"))
    down = ok(await client.get(f"/v1/repos/inp/commits/{src['id']}/subvenance"))
    assert down == [{"repo": "out", "commit": started["id"]}]
    assert ok(await client.get(f"/v1/repos/out/commits/{started['id']}/subvenance")) == []
    missing = uuid.uuid4().hex
    error(
        await client.post(
            "/v1/repos/out/commits",
            json={"branch": "z", "provenance": [{"repo": "inp", "commit": missing}]},
        ),
        404,
        missing,
    )
    by_id = ok(
        await client.post(
            "/v1/repos/out/commits",
            json={
                "branch": "by-id",
                "provenance": [
                    {"repo": "inp", "commit": src["id"]},
                    {"repo": "inp", "commit": "master"},  # the same commit, named by branch
                ],
            },
        ),
        201,
    )
    assert by_id["provenance"] == [{"repo": "inp", "commit": src["id"]}]


async def test_finish_marked_failed(client: httpx.AsyncClient) -> None:
    await _repo(client)
    ok(await client.post("/v1/repos/data/commits", json={}), 201)
    failed = ok(
        await client.post("/v1/repos/data/commits/master/finish", json={"error": "datum 3 failed"})
    )
    assert failed["error"] == "datum 3 failed"
    assert failed["state"] == "finished"


async def test_list_and_log_paging(client: httpx.AsyncClient) -> None:
    await _repo(client)
    ids = [(await commit_files(client, "data", {f"/f{i}": b"x"}))["id"] for i in range(5)]
    ok(await client.post("/v1/repos/data/commits", json={"branch": "side"}), 201)
    page = ok(await client.get("/v1/repos/data/commits", params={"limit": 2}))
    assert len(page["items"]) == 2
    seen = [c["id"] for c in page["items"]]
    while page["next_cursor"]:
        page = ok(
            await client.get(
                "/v1/repos/data/commits", params={"limit": 2, "cursor": page["next_cursor"]}
            )
        )
        seen += [c["id"] for c in page["items"]]
    assert len(seen) == 6
    assert seen[1:] == ids[::-1]
    finished = ok(await client.get("/v1/repos/data/commits", params={"state": "finished"}))
    assert [c["id"] for c in finished["items"]] == ids[::-1]
    log = ok(await client.get("/v1/repos/data/commits/master/log", params={"limit": 3}))
    assert [c["id"] for c in log["items"]] == ids[::-1][:3]
    rest = ok(
        await client.get("/v1/repos/data/commits/master/log", params={"cursor": log["next_cursor"]})
    )
    assert [c["id"] for c in rest["items"]] == ids[::-1][3:]
    assert rest["next_cursor"] is None


async def test_concurrent_writers_to_one_commit(client: httpx.AsyncClient) -> None:
    await _repo(client)
    commit = ok(await client.post("/v1/repos/data/commits", json={}), 201)
    url = f"/v1/repos/data/commits/{commit['id']}/file"
    responses = await asyncio.gather(
        *(client.put(url, params={"path": f"/w/{i}"}, content=str(i).encode()) for i in range(40))
    )
    assert all(r.status_code == 201 for r in responses)
    finished = ok(await client.post(f"/v1/repos/data/commits/{commit['id']}/finish"))
    assert finished["file_count"] == 40
    for i in (0, 17, 39):
        assert await read(client, "data", "master", f"/w/{i}") == str(i).encode()


async def test_put_racing_finish_is_either_in_or_refused(client: httpx.AsyncClient) -> None:
    """A put that returned 201 is in the finished commit; one that lost the race got 409."""
    await _repo(client)
    commit = ok(await client.post("/v1/repos/data/commits", json={}), 201)
    url = f"/v1/repos/data/commits/{commit['id']}/file"
    puts = [client.put(url, params={"path": f"/r/{i}"}, content=b"x") for i in range(30)]
    finish = client.post(f"/v1/repos/data/commits/{commit['id']}/finish")
    *put_responses, finish_response = await asyncio.gather(*puts, finish)
    assert finish_response.status_code == 200
    accepted = {f"/r/{i}" for i, r in enumerate(put_responses) if r.status_code == 201}
    assert all(r.status_code in (201, 409) for r in put_responses)
    listed = (
        ok(await client.get("/v1/repos/data/commits/master/list", params={"path": "/r"}))
        if accepted
        else {"items": []}
    )
    assert {f["path"] for f in listed["items"]} == accepted


async def test_an_empty_start_keeps_the_parent_but_none_of_its_files(
    client: httpx.AsyncClient,
) -> None:
    await _repo(client)
    first = await commit_files(client, "data", {"/old/a": b"1", "/keep": b"2"})
    child = ok(await client.post("/v1/repos/data/commits", json={"empty": True}), 201)
    assert child["parent"] == first["id"]
    url = f"/v1/repos/data/commits/{child['id']}"
    assert ok(await client.get(f"{url}/list", params={"path": "/"}))["items"] == []
    ok(await client.put(f"{url}/file", params={"path": "/new"}, content=b"3"), 201)
    ok(await client.post(f"{url}/finish"))
    files = ok(await client.get("/v1/repos/data/commits/master/glob", params={"pattern": "/**"}))
    assert [f["path"] for f in files if f["type"] == "file"] == ["/new"]
    assert await read(client, "data", first["id"], "/keep") == b"2"  # the parent is untouched
