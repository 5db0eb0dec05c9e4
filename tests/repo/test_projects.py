"""Projects: namespaces of repos, named ``project/repo`` (sent as ``project%2Frepo``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import embedded_settings
from tests.repo.helpers import commit_files, error, ok, read, serve
from tusk.client.repo import RepoClient
from tusk.errors import Conflict, NotFound
from tusk_repo.app import create_app
from tusk_repo.context import build_context


async def test_a_qualified_repo_works_like_any_other(client: httpx.AsyncClient) -> None:
    ok(await client.post("/v1/projects", json={"name": "vision"}), 201)
    created = ok(await client.post("/v1/repos", json={"name": "vision/images"}), 201)
    assert created["name"] == "vision/images"
    commit = await commit_files(client, "vision%2Fimages", {"/a.png": b"png"})
    assert commit["repo"] == "vision/images"
    assert await read(client, "vision%2Fimages", "master", "/a.png") == b"png"
    ok(await client.post("/v1/repos/vision%2Fimages/branches", json={"name": "dev"}), 201)
    branches = ok(await client.get("/v1/repos/vision%2Fimages/branches"))
    assert {b["repo"] for b in branches} == {"vision/images"}
    assert [r["name"] for r in ok(await client.get("/v1/repos"))] == ["vision/images"]
    assert (await client.delete("/v1/repos/vision%2Fimages")).status_code == 204
    error(await client.get("/v1/repos/vision%2Fimages"), 404, "vision/images")


async def test_the_same_name_in_two_projects_is_two_repos(client: httpx.AsyncClient) -> None:
    for project in ("p", "q"):
        ok(await client.post("/v1/projects", json={"name": project}), 201)
    for repo in ("images", "p/images", "q/images"):
        ok(await client.post("/v1/repos", json={"name": repo}), 201)
        await commit_files(client, repo.replace("/", "%2F"), {"/who": repo.encode()})
    for repo in ("images", "p/images", "q/images"):
        assert await read(client, repo.replace("/", "%2F"), "master", "/who") == repo.encode()
    listed = [r["name"] for r in ok(await client.get("/v1/repos"))]
    assert listed == ["images", "p/images", "q/images"]


async def test_default_project_is_the_unqualified_name(client: httpx.AsyncClient) -> None:
    created = ok(await client.post("/v1/repos", json={"name": "default/raw"}), 201)
    assert created["name"] == "raw"
    assert ok(await client.get("/v1/repos/default%2Fraw"))["name"] == "raw"
    error(await client.post("/v1/repos", json={"name": "raw"}), 409, "already exists")


async def test_a_repo_in_a_missing_project_is_404_saying_how(client: httpx.AsyncClient) -> None:
    error(
        await client.post("/v1/repos", json={"name": "ghost/raw"}),
        404,
        "project 'ghost' not found",
        "tusk project create ghost",
    )
    error(await client.get("/v1/repos/ghost%2Fraw"), 404, "ghost/raw")


async def test_qualified_names_are_validated(client: httpx.AsyncClient) -> None:
    ok(await client.post("/v1/projects", json={"name": "p"}), 201)
    error(await client.post("/v1/repos", json={"name": "bad.p/raw"}), 400, "invalid project")
    error(await client.post("/v1/repos", json={"name": "p/a/b"}), 400, "one '/'")
    error(await client.post("/v1/repos", json={"name": "/raw"}), 400, "nothing before")
    # 2 + 62 characters: each part is a valid name, but the whole does not fit a name column.
    error(await client.post("/v1/repos", json={"name": "p/" + "x" * 62}), 400, "at most 63")
    ok(await client.post("/v1/repos", json={"name": "p/" + "x" * 61}), 201)


async def test_projects_are_created_listed_and_deleted(client: httpx.AsyncClient) -> None:
    assert [p["name"] for p in ok(await client.get("/v1/projects"))] == ["default"]
    created = ok(await client.post("/v1/projects", json={"name": "p", "description": "d"}), 201)
    assert (created["name"], created["description"], created["repo_count"]) == ("p", "d", 0)
    error(await client.post("/v1/projects", json={"name": "p"}), 409, "already exists")
    error(await client.post("/v1/projects", json={"name": "default"}), 409, "already exists")
    error(await client.post("/v1/projects", json={"name": "a/b"}), 400)
    ok(await client.post("/v1/repos", json={"name": "p/raw"}), 201)
    ok(await client.post("/v1/repos", json={"name": "plain"}), 201)
    listed = {p["name"]: p["repo_count"] for p in ok(await client.get("/v1/projects"))}
    assert listed == {"default": 1, "p": 1}
    error(await client.delete("/v1/projects/p"), 409, "p/raw", "tusk repo delete")
    error(await client.delete("/v1/projects/default"), 400, "cannot be deleted")
    error(await client.delete("/v1/projects/ghost"), 404, "ghost")
    assert (await client.delete("/v1/repos/p%2Fraw")).status_code == 204
    assert (await client.delete("/v1/projects/p")).status_code == 204
    assert [p["name"] for p in ok(await client.get("/v1/projects"))] == ["default"]
    error(await client.post("/v1/repos", json={"name": "p/raw"}), 404, "tusk project create p")


async def test_a_project_named_with_an_underscore_holds_only_its_own_repos(
    client: httpx.AsyncClient,
) -> None:
    """'_' is a LIKE wildcard: project a_b must not count a repo of project axb."""
    for project in ("a_b", "axb"):
        ok(await client.post("/v1/projects", json={"name": project}), 201)
    ok(await client.post("/v1/repos", json={"name": "axb/raw"}), 201)
    assert (await client.delete("/v1/projects/a_b")).status_code == 204


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[str]:
    """The repo service behind uvicorn, which decodes %2F in the path before routing."""
    async with (
        build_context(embedded_settings(tmp_path)) as context,
        serve(create_app(context=context)) as port,
    ):
        yield f"http://127.0.0.1:{port}"


async def test_a_qualified_repo_through_a_real_server(served: str) -> None:
    async with RepoClient(served) as client:
        await client.create_project("vision")
        await client.create_repo("vision/images")
        await client.create_repo("images")
        commit = await client.start_commit("vision/images", "master")
        await client.put_file("vision/images", commit.id, "/a", b"in vision")
        await client.finish_commit("vision/images", commit.id)
        assert (await client.inspect_repo("vision/images")).branches == ["master"]
        assert (await client.inspect_repo("images")).branches == []
        got = b"".join([c async for c in client.get_file("vision/images", "master", "/a")])
        assert got == b"in vision"
        with pytest.raises(Conflict, match="vision/images"):
            await client.delete_project("vision")
        with pytest.raises(NotFound, match="tusk project create nope"):
            await client.create_repo("nope/images")
        assert [p.name for p in await client.list_projects()] == ["default", "vision"]
