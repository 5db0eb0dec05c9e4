"""The repo client SDK against the repo app running in-process."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tusk.client import CommitRef, RepoClient, error_from_response
from tusk.client.repo import _read_file
from tusk.errors import (
    AlreadyExists,
    Conflict,
    InvalidArgument,
    NotFound,
    RangeNotSatisfiable,
    TuskError,
    Unauthorized,
    Unavailable,
)
from tusk_repo.app import create_app
from tusk_repo.config import RepoSettings
from tusk_repo.context import build_context

from .conftest import free_port


async def read(client: RepoClient, repo: str, ref: str, path: str, **kw: int) -> bytes:
    return b"".join([piece async for piece in client.get_file(repo, ref, path, **kw)])


async def commit_files(client: RepoClient, repo: str, files: dict[str, bytes]) -> str:
    commit = await client.start_commit(repo, "master")
    await client.put_files(repo, commit.id, files.items())
    return (await client.finish_commit(repo, commit.id)).id


async def test_repos(client: RepoClient) -> None:
    created = await client.create_repo("raw", "daily exports")
    assert (created.name, created.description, created.commit_count) == ("raw", "daily exports", 0)
    assert [r.name for r in await client.list_repos()] == ["raw"]
    assert (await client.inspect_repo("raw")).description == "daily exports"
    with pytest.raises(AlreadyExists, match="already exists"):
        await client.create_repo("raw")
    with pytest.raises(InvalidArgument, match="invalid repo name"):
        await client.create_repo("not a name")
    await client.delete_repo("raw", force=True)
    with pytest.raises(NotFound, match="repo 'raw' not found"):
        await client.inspect_repo("raw")


async def test_dot_names_never_reach_the_url(client: RepoClient) -> None:
    with pytest.raises(InvalidArgument, match="invalid name"):
        await client.inspect_repo("..")


async def test_put_file_from_bytes_path_and_stream(client: RepoClient, tmp_path: Path) -> None:
    await client.create_repo("raw")
    commit = await client.start_commit("raw", "master", description="three sources")
    local = tmp_path / "big.bin"
    local.write_bytes(os.urandom(3 << 20))

    async def pieces() -> AsyncIterator[bytes]:
        for part in (b"stre", b"amed"):
            yield part

    sent: list[int] = []
    await client.put_file("raw", "master", "/a.txt", b"bytes")
    result = await client.put_file("raw", commit.id, "/dir/big.bin", local, progress=sent.append)
    await client.put_file("raw", "master", "/s.txt", pieces(), size=8)
    assert result.files[0].size_bytes == 3 << 20
    assert sum(sent) == 3 << 20
    finished = await client.finish_commit("raw", "master")
    assert (finished.state, finished.file_count, finished.description) == (
        "finished",
        3,
        "three sources",
    )
    assert await read(client, "raw", "master", "/a.txt") == b"bytes"
    assert await read(client, "raw", "master", "/s.txt") == b"streamed"
    assert await read(client, "raw", finished.id, "/dir/big.bin") == local.read_bytes()


async def test_cut_off_stream_writes_nothing(client: RepoClient) -> None:
    await client.create_repo("raw")
    await client.start_commit("raw")

    async def five_bytes() -> AsyncIterator[bytes]:
        yield b"12345"

    with pytest.raises(InvalidArgument, match="nothing was written"):
        await client.put_file("raw", "master", "/short", five_bytes(), size=10)
    await client.put_file("raw", "master", "/ok", b"ok")
    await client.finish_commit("raw", "master")
    assert [f.path async for f in client.walk("raw", "master")] == ["/ok"]


async def test_byte_ranges(client: RepoClient) -> None:
    await client.create_repo("raw")
    await commit_files(client, "raw", {"/f": b"0123456789"})
    assert await read(client, "raw", "master", "/f", offset=2, length=3) == b"234"
    assert await read(client, "raw", "master", "/f", offset=7) == b"789"
    assert await read(client, "raw", "master", "/f", length=0) == b""
    with pytest.raises(RangeNotSatisfiable):
        await read(client, "raw", "master", "/f", offset=10)


async def test_put_files_builds_a_tar(client: RepoClient, tmp_path: Path) -> None:
    await client.create_repo("raw")
    local = tmp_path / "local.txt"
    local.write_text("from disk")
    long_name = "/deep/" + "n" * 150 + ".txt"
    commit = await client.start_commit("raw")
    result = await client.put_files(
        "raw",
        commit.id,
        [("a.txt", b"a"), ("sub/é.txt", b""), (long_name, b"long"), ("disk.txt", local)],
        prefix="/in",
    )
    assert sorted(f.path for f in result.files) == sorted(
        ["/in/a.txt", "/in/sub/é.txt", "/in" + long_name, "/in/disk.txt"]
    )
    await client.finish_commit("raw", commit.id)
    assert await read(client, "raw", "master", "/in/disk.txt") == b"from disk"
    assert await read(client, "raw", "master", "/in/sub/é.txt") == b""
    assert await read(client, "raw", "master", "/in" + long_name) == b"long"
    with pytest.raises(InvalidArgument, match="at least one file"):
        await client.put_files("raw", "master", [])


async def test_commits_paging_log_and_ancestry_refs(client: RepoClient) -> None:
    await client.create_repo("raw")
    ids = [await commit_files(client, "raw", {"/n": str(i).encode()}) for i in range(5)]
    newest_first = ids[::-1]
    assert [c.id async for c in client.list_commits("raw", page_size=2)] == newest_first
    page = await client.list_commits_page("raw", limit=2)
    assert [c.id for c in page.items] == newest_first[:2]
    assert page.next_cursor
    assert [c.id async for c in client.log("raw", "master", page_size=2)] == newest_first
    assert [c.id async for c in client.log("raw", "master^2")] == newest_first[2:]
    # `^` must be percent-encoded in the URL path; `~` is safe either way.
    assert (await client.inspect_commit("raw", "master^1")).id == ids[-2]
    assert (await client.inspect_commit("raw", "master~3")).id == ids[-4]
    assert await read(client, "raw", "master^4", "/n") == b"0"
    with pytest.raises(NotFound, match="ancestor"):
        await client.inspect_commit("raw", "master^9")


async def test_branches(client: RepoClient) -> None:
    await client.create_repo("raw")
    first = await commit_files(client, "raw", {"/a": b"1"})
    second = await commit_files(client, "raw", {"/a": b"2"})
    dev = await client.create_branch("raw", "dev", "master^1")
    assert dev.head == first
    assert {b.name for b in await client.list_branches("raw")} == {"master", "dev"}
    assert (await client.move_branch("raw", "dev", second)).head == second
    assert (await client.inspect_branch("raw", "dev")).head == second
    await client.delete_branch("raw", "dev")
    with pytest.raises(NotFound):
        await client.inspect_branch("raw", "dev")


async def test_open_commit_rules(client: RepoClient) -> None:
    await client.create_repo("raw")
    commit = await client.start_commit("raw")
    with pytest.raises(Conflict) as raised:
        await client.start_commit("raw")
    assert raised.value.details == {"open_commit": commit.id}
    await client.abandon_commit("raw", commit.id)
    with pytest.raises(Conflict, match="no open commit"):
        await client.put_file("raw", "master", "/x", b"x")


async def test_provenance(client: RepoClient) -> None:
    await client.create_repo("raw")
    await client.create_repo("features")
    source = await commit_files(client, "raw", {"/a": b"1"})
    derived = await client.start_commit(
        "features", provenance=[CommitRef(repo="raw", commit="master")], description="from raw"
    )
    assert derived.provenance == [CommitRef(repo="raw", commit=source)]
    with pytest.raises(Conflict):
        await client.delete_repo("raw")
    await client.delete_repo("raw", force=True)


async def test_listing_glob_diff_history(client: RepoClient) -> None:
    await client.create_repo("raw")
    await commit_files(client, "raw", {"/d/a.csv": b"a", "/d/b.csv": b"b", "/d/e/c.json": b"c"})
    second = await client.start_commit("raw")
    await client.put_file("raw", second.id, "/d/a.csv", b"changed")
    await client.delete_file("raw", second.id, "/d/b.csv")
    await client.put_file("raw", second.id, "/new.txt", b"new")
    await client.finish_commit("raw", second.id)

    assert (await client.stat("raw", "master", "/d")).type == "dir"
    names = [e.path async for e in client.list_dir("raw", "master", "/d", page_size=1)]
    assert names == ["/d/a.csv", "/d/e"]
    assert [f.path async for f in client.walk("raw", "master")] == [
        "/d/a.csv",
        "/d/e/c.json",
        "/new.txt",
    ]
    assert [f.path for f in await client.glob("raw", "master", "/**/*.csv")] == ["/d/a.csv"]

    diff = await client.diff("raw", "master")
    assert {(c.path, c.change) for c in diff.changes} == {
        ("/d/a.csv", "modified"),
        ("/d/b.csv", "deleted"),
        ("/new.txt", "added"),
    }
    assert diff.to_commit == second.id
    only_d = await client.diff("raw", "master", from_ref="master^1", path="/d")
    assert {c.path for c in only_d.changes} == {"/d/a.csv", "/d/b.csv"}

    history = await client.history("raw", "master", "/d/a.csv")
    assert [h.change for h in history] == ["modified", "added"]


async def test_bearer_token(tmp_path: Path) -> None:
    settings = RepoSettings(data_dir=tmp_path, api_tokens="s3cret")
    async with build_context(settings) as context:
        transport = httpx.ASGITransport(app=create_app(context=context))
        async with RepoClient("http://repo.test", transport=transport) as anonymous:
            with pytest.raises(Unauthorized, match="TUSK_TOKEN"):
                await anonymous.list_repos()
        async with RepoClient("http://repo.test", "s3cret", transport=transport) as trusted:
            assert await trusted.list_repos() == []


async def test_unreachable_server_names_the_url_and_variable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with RepoClient(url) as unreachable:
        with pytest.raises(Unavailable) as raised:
            await unreachable.list_repos()
        with pytest.raises(Unavailable):
            await read(unreachable, "raw", "master", "/x")
    assert url in raised.value.message
    assert "TUSK_REPO_URL" in raised.value.message


def test_errors_without_a_tusk_body() -> None:
    request = httpx.Request("GET", "http://repo.test/v1/repos")
    gateway = error_from_response(httpx.Response(502, text="<html>bad gateway", request=request))
    assert isinstance(gateway, Unavailable)
    assert "HTTP 502" in gateway.message
    internal = error_from_response(
        httpx.Response(500, json={"error": "internal error", "code": "internal"}, request=request),
        "repo",
    )
    assert type(internal) is TuskError
    assert "repo service's log" in internal.message
    conflict = error_from_response(
        httpx.Response(
            409,
            json={"error": "busy", "code": "conflict", "details": {"open_commit": "c"}},
            request=request,
        )
    )
    assert isinstance(conflict, Conflict)
    assert conflict.details == {"open_commit": "c"}


async def test_a_file_that_changes_size_is_refused(tmp_path: Path) -> None:
    local = tmp_path / "f"
    local.write_bytes(b"12345")
    with pytest.raises(InvalidArgument, match="changed size"):
        [piece async for piece in _read_file(local, 3, None)]
    with pytest.raises(InvalidArgument, match="changed size"):
        [piece async for piece in _read_file(local, 9, None)]
    assert b"".join([piece async for piece in _read_file(local, 5, None)]) == b"12345"
