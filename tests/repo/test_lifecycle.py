"""Tags, merges, protected repos and branches, history edits and tar downloads, on both
backends (SQLite + local directory, PostgreSQL + S3)."""

from __future__ import annotations

import io
import json
import tarfile
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.repo.helpers import commit_files, error, ok, read, tar_of
from tusk_repo import trees
from tusk_repo.context import Context
from tusk_repo.tables import CommitRow, TreeRow, outbox


@pytest.fixture
async def repo(client: httpx.AsyncClient) -> str:
    ok(await client.post("/v1/repos", json={"name": "life"}), 201)
    return "life"


async def events_of(ctx: Context, kind: str) -> list[dict[str, Any]]:
    async with ctx.db.session(write=False) as session:
        envelopes = (await session.execute(select(outbox.c.envelope))).scalars().all()
    found = []
    for envelope in envelopes:
        text = envelope if isinstance(envelope, str) else json.dumps(envelope)
        if kind in text:
            found.append(envelope if isinstance(envelope, dict) else json.loads(text))
    return found


async def files_of(client: httpx.AsyncClient, repo: str, ref: str) -> dict[str, bytes]:
    response = await client.get(f"/v1/repos/{repo}/commits/{ref}/tar", params={"path": "/"})
    assert response.status_code == 200, response.text
    with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:") as archive:
        return {
            "/" + m.name: archive.extractfile(m).read()  # type: ignore[union-attr]
            for m in archive
        }


# --- tags ----------------------------------------------------------------------------------


async def test_tag_is_a_ref_everywhere_and_never_moves(
    client: httpx.AsyncClient, repo: str
) -> None:
    first = await commit_files(client, repo, {"/model.onnx": b"v1"})
    tag = ok(await client.post(f"/v1/repos/{repo}/tags", json={"name": "v1", "ref": "master"}), 201)
    assert tag["commit"] == first["id"]
    await commit_files(client, repo, {"/model.onnx": b"v2"})
    assert await read(client, repo, "v1", "/model.onnx") == b"v1"
    assert await read(client, repo, "master", "/model.onnx") == b"v2"
    assert ok(await client.get(f"/v1/repos/{repo}/commits/v1"))["id"] == first["id"]
    error(
        await client.post(f"/v1/repos/{repo}/tags", json={"name": "v1", "ref": "master"}),
        409,
        "immutable",
    )
    error(
        await client.post(f"/v1/repos/{repo}/tags", json={"name": "master", "ref": "master"}),
        409,
        "branch named 'master'",
    )
    error(await client.post(f"/v1/repos/{repo}/branches", json={"name": "v1"}), 409, "tag")
    listed = ok(await client.get(f"/v1/repos/{repo}/tags"))
    assert [t["name"] for t in listed] == ["v1"]
    error(
        await client.post(f"/v1/repos/{repo}/tags", json={"name": "bad name", "ref": "master"}),
        400,
        "invalid branch name",
    )


# --- merges --------------------------------------------------------------------------------


async def test_fast_forward_announces_the_commit_on_the_destination(
    client: httpx.AsyncClient, repo_ctx: Context, repo: str
) -> None:
    await commit_files(client, repo, {"/a": b"a"})
    ok(await client.post(f"/v1/repos/{repo}/branches", json={"name": "dev", "head": "master"}), 201)
    dev = await commit_files(client, repo, {"/b": b"b"}, branch="dev")
    merged = ok(
        await client.post(f"/v1/repos/{repo}/merge", json={"source": "dev", "into": "master"})
    )
    assert merged["outcome"] == "fast-forward"
    assert merged["commit"] == dev["id"]
    assert ok(await client.get(f"/v1/repos/{repo}/branches/master"))["head"] == dev["id"]
    finished = [
        e for e in await events_of(repo_ctx, "commit.finished") if dev["id"] in json.dumps(e)
    ]
    assert any('"branch": "master"' in json.dumps(e) for e in finished), finished
    again = ok(
        await client.post(f"/v1/repos/{repo}/merge", json={"source": "dev", "into": "master"})
    )
    assert again["outcome"] == "up-to-date"


async def test_three_way_merge_makes_a_commit_with_two_parents_and_provenance(
    client: httpx.AsyncClient, repo: str
) -> None:
    ok(await client.post("/v1/repos", json={"name": "upstream"}), 201)
    up = await commit_files(client, "upstream", {"/x": b"x"})
    base = await commit_files(
        client, repo, {"/same": b"s", "/dir/ours": b"o0", "/dir/theirs": b"t0", "/gone": b"g"}
    )
    ok(await client.post(f"/v1/repos/{repo}/branches", json={"name": "dev", "head": "master"}), 201)
    dev = await commit_files(
        client,
        repo,
        {"/dir/theirs": b"t1", "/new-on-dev": b"n"},
        branch="dev",
        provenance=[{"repo": "upstream", "commit": up["id"]}],
    )
    ok(await client.post(f"/v1/repos/{repo}/commits", json={"branch": "master"}), 201)
    ok(
        await client.put(
            f"/v1/repos/{repo}/commits/master/file", params={"path": "/dir/ours"}, content=b"o1"
        ),
        201,
    )
    ok(await client.delete(f"/v1/repos/{repo}/commits/master/file", params={"path": "/gone"}), 204)
    master = ok(await client.post(f"/v1/repos/{repo}/commits/master/finish"))
    merged = ok(
        await client.post(f"/v1/repos/{repo}/merge", json={"source": "dev", "into": "master"})
    )
    assert merged["outcome"] == "merged"
    info = ok(await client.get(f"/v1/repos/{repo}/commits/master"))
    assert info["id"] == merged["commit"]
    assert (info["parent"], info["merge_parent"]) == (master["id"], dev["id"])
    assert {"repo": "upstream", "commit": up["id"]} in info["provenance"]
    assert await files_of(client, repo, "master") == {
        "/same": b"s",
        "/dir/ours": b"o1",
        "/dir/theirs": b"t1",
        "/new-on-dev": b"n",
    }
    assert base["id"] != info["id"]


async def tree_rows(ctx: Context) -> int:
    async with ctx.db.session(write=False) as session:
        return len((await session.execute(select(TreeRow.hash))).all())


async def test_conflicts_are_listed_and_nothing_is_written_unless_a_strategy_settles_them(
    client: httpx.AsyncClient, repo: str, repo_ctx: Context
) -> None:
    await commit_files(client, repo, {"/both": b"0", "/del": b"0", "/keep": b"k"})
    ok(await client.post(f"/v1/repos/{repo}/branches", json={"name": "dev", "head": "master"}), 201)
    ok(await client.post(f"/v1/repos/{repo}/commits", json={"branch": "dev"}), 201)
    ok(
        await client.put(
            f"/v1/repos/{repo}/commits/dev/file", params={"path": "/both"}, content=b"dev"
        ),
        201,
    )
    ok(
        await client.put(
            f"/v1/repos/{repo}/commits/dev/file", params={"path": "/del"}, content=b"dev"
        ),
        201,
    )
    # Changed on one side only: the merged root is a new node.
    ok(
        await client.put(
            f"/v1/repos/{repo}/commits/dev/file", params={"path": "/keep"}, content=b"k2"
        ),
        201,
    )
    ok(await client.post(f"/v1/repos/{repo}/commits/dev/finish"))
    ok(await client.post(f"/v1/repos/{repo}/commits", json={"branch": "master"}), 201)
    ok(
        await client.put(
            f"/v1/repos/{repo}/commits/master/file", params={"path": "/both"}, content=b"master"
        ),
        201,
    )
    ok(await client.delete(f"/v1/repos/{repo}/commits/master/file", params={"path": "/del"}), 204)
    head = ok(await client.post(f"/v1/repos/{repo}/commits/master/finish"))
    nodes = await tree_rows(repo_ctx)

    response = await client.post(
        f"/v1/repos/{repo}/merge", json={"source": "dev", "into": "master"}
    )
    message = error(response, 409, "/both (changed on both sides)", "/del (deleted on one side")
    assert "nothing was written" in message
    conflicts = response.json()["details"]["conflicts"]
    assert [c["path"] for c in conflicts] == ["/both", "/del"]
    assert ok(await client.get(f"/v1/repos/{repo}/branches/master"))["head"] == head["id"]
    # Not even the merged nodes (made, on PostgreSQL written, before the conflicts were known).
    assert await tree_rows(repo_ctx) == nodes

    theirs = ok(
        await client.post(
            f"/v1/repos/{repo}/merge",
            json={"source": "dev", "into": "master", "strategy": "theirs"},
        )
    )
    assert [c["path"] for c in theirs["resolved_conflicts"]] == ["/both", "/del"]
    assert await files_of(client, repo, "master") == {
        "/both": b"dev",
        "/del": b"dev",
        "/keep": b"k2",
    }


async def commit_tar(
    client: httpx.AsyncClient, repo: str, files: dict[str, bytes], branch: str = "master"
) -> str:
    commit = ok(await client.post(f"/v1/repos/{repo}/commits", json={"branch": branch}), 201)
    ok(
        await client.post(
            f"/v1/repos/{repo}/commits/{commit['id']}/files",
            content=tar_of({path.lstrip("/"): data for path, data in files.items()}),
        ),
        201,
    )
    ok(await client.post(f"/v1/repos/{repo}/commits/{commit['id']}/finish"))
    return str(commit["id"])


async def root_of(ctx: Context, commit: str) -> str | None:
    async with ctx.db.session(write=False) as session:
        return await session.scalar(select(CommitRow.root_tree).where(CommitRow.id == commit))


async def test_a_wide_merge_gives_the_tree_its_files_give(
    client: httpx.AsyncClient, repo: str, repo_ctx: Context
) -> None:
    """Both sides change a few files of a wide directory in place (the same lengths: compared
    span by span, spliced into ours), one side also adds one (compared as sets of rows): the
    merged tree is byte for byte the tree of a commit that holds the expected files."""
    base = {f"/wide/f{i:03}": f"base {i:03}".encode() for i in range(300)}
    await commit_tar(client, repo, base)
    ok(await client.post(f"/v1/repos/{repo}/branches", json={"name": "dev", "head": "master"}), 201)
    theirs = {f"/wide/f{i:03}": f"dev! {i:03}".encode() for i in (3, 150, 299)}
    ours = {f"/wide/f{i:03}": f"main {i:03}".encode() for i in (0, 20, 151)}
    added = {"/side/new": b"added on master"}
    await commit_tar(client, repo, theirs, branch="dev")
    await commit_tar(client, repo, {**ours, **added})
    merged = ok(
        await client.post(f"/v1/repos/{repo}/merge", json={"source": "dev", "into": "master"})
    )
    assert merged["outcome"] == "merged"
    assert merged["changed_paths"] == 3
    expected = {**base, **theirs, **ours, **added}
    assert await files_of(client, repo, "master") == expected
    ok(await client.post("/v1/repos", json={"name": "direct"}), 201)
    direct = await commit_tar(client, "direct", expected)
    assert await root_of(repo_ctx, merged["commit"]) == await root_of(repo_ctx, direct)
    # The merge saved the spliced nodes first (the direct commit found them there), with the
    # references it rewrote from ours': what scanning each node finds.
    async with repo_ctx.db.session(write=False) as session:
        stored = (
            await session.execute(select(TreeRow.entries, TreeRow.subdirs, TreeRow.file_keys))
        ).all()
    assert stored
    for entries, subdirs, keys in stored:
        assert (subdirs, keys) == trees.node_refs(entries)


async def test_merge_with_ours_keeps_the_destination(client: httpx.AsyncClient, repo: str) -> None:
    await commit_files(client, repo, {"/f": b"0"})
    ok(await client.post(f"/v1/repos/{repo}/branches", json={"name": "dev", "head": "master"}), 201)
    await commit_files(client, repo, {"/f": b"dev", "/g": b"g"}, branch="dev")
    await commit_files(client, repo, {"/f": b"master"})
    ok(
        await client.post(
            f"/v1/repos/{repo}/merge", json={"source": "dev", "into": "master", "strategy": "ours"}
        )
    )
    assert await files_of(client, repo, "master") == {"/f": b"master", "/g": b"g"}
    error(
        await client.post(f"/v1/repos/{repo}/merge", json={"source": "nope", "into": "master"}),
        404,
        "nope",
    )
    error(
        await client.post(
            f"/v1/repos/{repo}/merge", json={"source": "dev", "into": "master", "strategy": "mine"}
        ),
        400,
        "strategy",
    )


# --- protection ----------------------------------------------------------------------------


async def test_output_repo_takes_writes_only_from_its_pipeline(client: httpx.AsyncClient) -> None:
    ok(await client.post("/v1/repos", json={"name": "train", "pipeline": "train"}), 201)
    message = error(
        await client.post("/v1/repos/train/commits", json={"branch": "master"}),
        403,
        "output of pipeline 'train'",
    )
    assert "admin override" in message
    job = ok(
        await client.post(
            "/v1/repos/train/commits", json={"branch": "master", "pipeline": "train"}
        ),
        201,
    )
    # A user addressing the branch cannot reach into the job's open commit.
    error(
        await client.put(
            "/v1/repos/train/commits/master/file", params={"path": "/hack"}, content=b"x"
        ),
        403,
        "pipeline 'train'",
    )
    ok(
        await client.put(
            f"/v1/repos/train/commits/{job['id']}/file", params={"path": "/model"}, content=b"m"
        ),
        201,
    )
    ok(await client.post(f"/v1/repos/train/commits/{job['id']}/finish"))
    error(
        await client.post(
            "/v1/repos/train/commits", json={"branch": "master", "pipeline": "other"}
        ),
        403,
        "pipeline 'train'",
    )
    repair = ok(
        await client.post(
            "/v1/repos/train/commits",
            json={"branch": "master", "admin_override": "restore the model after a bad run"},
        ),
        201,
    )
    assert repair["opened_by"] == "admin: restore the model after a bad run"
    ok(
        await client.put(
            "/v1/repos/train/commits/master/file", params={"path": "/fix"}, content=b"f"
        ),
        201,
    )
    ok(await client.post("/v1/repos/train/commits/master/finish"))
    assert ok(await client.get("/v1/repos/train"))["owner_pipeline"] == "train"


async def test_protected_branch_changes_only_by_merges(
    client: httpx.AsyncClient, repo: str
) -> None:
    first = await commit_files(client, repo, {"/a": b"a"})
    ok(await client.post(f"/v1/repos/{repo}/branches", json={"name": "dev", "head": "master"}), 201)
    info = ok(
        await client.put(f"/v1/repos/{repo}/branches/master/protection", json={"protected": True})
    )
    assert info["protected"] is True
    error(
        await client.post(f"/v1/repos/{repo}/commits", json={"branch": "master"}), 403, "protected"
    )
    dev = await commit_files(client, repo, {"/b": b"b"}, branch="dev")
    error(
        await client.put(f"/v1/repos/{repo}/branches/master", json={"head": dev["id"]}),
        403,
        "protected",
    )
    ok(await client.post(f"/v1/repos/{repo}/merge", json={"source": "dev", "into": "master"}))
    assert ok(await client.get(f"/v1/repos/{repo}/branches/master"))["head"] == dev["id"]
    ok(await client.put(f"/v1/repos/{repo}/branches/master/protection", json={"protected": False}))
    ok(await client.put(f"/v1/repos/{repo}/branches/master", json={"head": first["id"]}))


# --- history edits -------------------------------------------------------------------------


async def test_delete_head_moves_the_branch_back(client: httpx.AsyncClient, repo: str) -> None:
    first = await commit_files(client, repo, {"/a": b"1"})
    second = await commit_files(client, repo, {"/a": b"2"})
    dropped = ok(await client.post(f"/v1/repos/{repo}/commits/{second['id']}/delete"))
    assert dropped["dropped"] == [{"repo": repo, "commit": second["id"]}]
    assert dropped["moved_branches"] == [f"{repo}@master"]
    assert await read(client, repo, "master", "/a") == b"1"
    error(await client.get(f"/v1/repos/{repo}/commits/{second['id']}"), 404)
    assert ok(await client.get(f"/v1/repos/{repo}/commits/master"))["id"] == first["id"]


async def test_delete_refuses_while_provenance_depends_and_cascades(
    client: httpx.AsyncClient, repo: str
) -> None:
    raw = await commit_files(client, repo, {"/raw": b"r"})
    ok(await client.post("/v1/repos", json={"name": "derived"}), 201)
    out = await commit_files(
        client, "derived", {"/out": b"o"}, provenance=[{"repo": repo, "commit": raw["id"]}]
    )
    ok(await client.post("/v1/repos", json={"name": "further"}), 201)
    far = await commit_files(
        client, "further", {"/f": b"f"}, provenance=[{"repo": "derived", "commit": out["id"]}]
    )
    response = await client.post(f"/v1/repos/{repo}/commits/{raw['id']}/delete")
    error(response, 409, f"derived@{out['id']}", "cascade")
    assert ok(await client.get(f"/v1/repos/{repo}/commits/{raw['id']}"))["id"] == raw["id"]
    dropped = ok(
        await client.post(
            f"/v1/repos/{repo}/commits/{raw['id']}/delete", params={"cascade": "true"}
        )
    )
    assert {d["commit"] for d in dropped["dropped"]} == {raw["id"], out["id"], far["id"]}
    for name, commit in ((repo, raw), ("derived", out), ("further", far)):
        error(await client.get(f"/v1/repos/{name}/commits/{commit['id']}"), 404)


async def test_squash_keeps_the_newest_and_takes_the_oldest_parent(
    client: httpx.AsyncClient, repo: str
) -> None:
    root = await commit_files(client, repo, {"/a": b"0"})
    one = await commit_files(client, repo, {"/a": b"1"})
    two = await commit_files(client, repo, {"/b": b"2"})
    three = await commit_files(client, repo, {"/c": b"3"})
    dropped = ok(
        await client.post(
            f"/v1/repos/{repo}/squash", json={"oldest": one["id"], "newest": three["id"]}
        )
    )
    assert {d["commit"] for d in dropped["dropped"]} == {one["id"], two["id"]}
    info = ok(await client.get(f"/v1/repos/{repo}/commits/{three['id']}"))
    assert info["parent"] == root["id"]
    assert await files_of(client, repo, "master") == {"/a": b"1", "/b": b"2", "/c": b"3"}
    error(
        await client.post(
            f"/v1/repos/{repo}/squash", json={"oldest": three["id"], "newest": root["id"]}
        ),
        400,
        "not an ancestor",
    )
    four = await commit_files(client, repo, {"/d": b"4"})
    five = await commit_files(client, repo, {"/e": b"5"})
    ok(
        await client.post(f"/v1/repos/{repo}/branches", json={"name": "side", "head": four["id"]}),
        201,
    )
    error(
        await client.post(
            f"/v1/repos/{repo}/squash", json={"oldest": four["id"], "newest": five["id"]}
        ),
        409,
        "side",
    )


async def test_tagged_commits_are_not_dropped(client: httpx.AsyncClient, repo: str) -> None:
    await commit_files(client, repo, {"/a": b"1"})
    ok(await client.post(f"/v1/repos/{repo}/tags", json={"name": "keep", "ref": "master"}), 201)
    error(await client.post(f"/v1/repos/{repo}/commits/keep/delete"), 409, "immutable")


# --- tar downloads -------------------------------------------------------------------------


async def test_tar_of_a_directory_byte_for_byte_and_with_skips(
    client: httpx.AsyncClient, repo: str
) -> None:
    files = {f"/d/{i:03}.bin": bytes([i]) * (i * 37) for i in range(50)}
    files["/d/sub/" + "long-name-" * 20] = b"deep"
    files["/other"] = b"not under /d"
    ok(await client.post(f"/v1/repos/{repo}/commits", json={}), 201)
    from tests.repo.helpers import tar_of

    ok(await client.post(f"/v1/repos/{repo}/commits/master/files", content=tar_of(files)), 201)
    ok(await client.post(f"/v1/repos/{repo}/commits/master/finish"))
    plain = await client.get(f"/v1/repos/{repo}/commits/master/tar", params={"path": "/d"})
    assert plain.headers["content-type"] == "application/x-tar"
    assert b"TUSK.hash" not in plain.content  # plain tar for curl | tar x
    response = await client.post(f"/v1/repos/{repo}/commits/master/tar", json={"path": "/d"})
    with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:") as archive:
        got = {m.name: archive.extractfile(m).read() for m in archive}  # type: ignore[union-attr]
        hashes = {m.name: m.pax_headers["TUSK.hash"] for m in archive.getmembers()}
    assert got == {p[len("/d/") :]: v for p, v in files.items() if p.startswith("/d/")}
    skip = {name: hashes[name] for name in list(hashes)[:10]}
    skip["001.bin"] = "0" * 64  # a damaged local copy is sent again
    partial = await client.post(
        f"/v1/repos/{repo}/commits/master/tar", json={"path": "/d", "skip": skip}
    )
    with tarfile.open(fileobj=io.BytesIO(partial.content), mode="r:") as archive:
        names = {m.name for m in archive}
    assert names == set(got) - (set(skip) - {"001.bin"})
    assert "001.bin" in names
    error(
        await client.get(f"/v1/repos/{repo}/commits/master/tar", params={"path": "/nope"}),
        404,
        "/nope",
    )
