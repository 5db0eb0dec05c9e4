"""Listing many repos or commits runs a fixed number of queries, not one or more per row."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import event, insert, select

from tests.repo.helpers import commit_files, read
from tusk_repo import treewalk
from tusk_repo.context import Context
from tusk_repo.tables import BranchRow, CommitRow, ProvenanceRow, RepoRow
from tusk_repo.trees import EMPTY_TREE

MANY = 1000
# Generous against small changes (an access check, a short-id lookup), far below one per row.
BOUND = 20


@contextmanager
def counted(ctx: Context) -> Iterator[list[str]]:
    statements: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    engine = ctx.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", before)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", before)


def _commit(repo_id: int, parent: str | None, n: int) -> dict[str, object]:
    cid = uuid.uuid4().hex
    return {
        "id": cid,
        "repo_id": repo_id,
        "branch": "master",
        "parent": parent,
        "state": "finished",
        "error": None,
        "base_tree": EMPTY_TREE,
        "root_tree": EMPTY_TREE,
        "global_id": cid,
        "description": f"commit {n}",
        "size_bytes": n,
        "file_count": 0,
        "started_at": datetime.now(UTC),
        "finished_at": datetime.now(UTC),
    }


async def test_listing_a_thousand_repos_runs_a_bounded_number_of_queries(
    repo_ctx: Context, client: httpx.AsyncClient
) -> None:
    now = datetime.now(UTC)
    async with repo_ctx.db.session() as session:
        await session.execute(
            insert(RepoRow),
            [{"name": f"r{n:04d}", "description": "", "created_at": now} for n in range(MANY)],
        )
        ids = dict((await session.execute(select(RepoRow.name, RepoRow.id))).all())
        heads = [_commit(ids[f"r{n:04d}"], None, n) for n in range(MANY)]
        await session.execute(insert(CommitRow), heads)
        await session.execute(
            insert(BranchRow),
            [
                {"repo_id": h["repo_id"], "name": name, "head": h["id"], "created_at": now}
                for h in heads
                for name in ("master", "dev")
            ],
        )

    with counted(repo_ctx) as statements:
        response = await client.get("/v1/repos")
    assert response.status_code == 200, response.text
    repos = response.json()
    assert len(repos) == MANY
    assert repos[7] | {"created_at": None} == {
        "name": "r0007",
        "description": "",
        "created_at": None,
        "branches": ["dev", "master"],
        "size_bytes": 7,
        "commit_count": 1,
        "owner_pipeline": None,
        "keep_days": None,
        "keep_last": None,
    }
    assert len(statements) <= BOUND, f"{len(statements)} queries to list {MANY} repos"


async def test_listing_a_thousand_commits_runs_a_bounded_number_of_queries(
    repo_ctx: Context, client: httpx.AsyncClient
) -> None:
    assert (await client.post("/v1/repos", json={"name": "raw"})).status_code == 201
    assert (await client.post("/v1/repos", json={"name": "many"})).status_code == 201
    async with repo_ctx.db.session() as session:
        ids = dict((await session.execute(select(RepoRow.name, RepoRow.id))).all())
        inputs = [_commit(ids["raw"], None, n) for n in range(2)]
        commits: list[dict[str, object]] = []
        for n in range(MANY):
            commits.append(_commit(ids["many"], commits[-1]["id"] if commits else None, n))
        await session.execute(insert(CommitRow), [*inputs, *commits])
        await session.execute(
            insert(ProvenanceRow),
            [
                {"commit_id": c["id"], "input_commit": i["id"], "input_repo": "raw"}
                for c in commits
                for i in inputs
            ],
        )

    with counted(repo_ctx) as statements:
        response = await client.get("/v1/repos/many/commits", params={"limit": MANY})
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert len(items) == MANY
    assert items[0]["id"] == commits[-1]["id"]
    expected = sorted(str(i["id"]) for i in inputs)
    assert all(
        [p["commit"] for p in item["provenance"]] == expected
        and {p["repo"] for p in item["provenance"]} == {"raw"}
        for item in items
    )
    assert len(statements) <= BOUND, f"{len(statements)} queries to list {MANY} commits"

    # A thousand generations of one commit's ancestry, and the history of a path along them.
    head = commits[-1]["id"]
    with counted(repo_ctx) as statements:
        response = await client.get(f"/v1/repos/many/commits/{head}/log", params={"limit": MANY})
    assert response.status_code == 200, response.text
    log = response.json()
    assert [c["id"] for c in log["items"]] == [c["id"] for c in reversed(commits)]
    assert log["next_cursor"] is None
    assert len(statements) <= BOUND, f"{len(statements)} queries for {MANY} generations"
    with counted(repo_ctx) as statements:
        response = await client.get(
            f"/v1/repos/many/commits/{head}/history", params={"path": "/a", "limit": MANY}
        )
    assert response.status_code == 200, response.text
    assert response.json() == []
    assert len(statements) <= BOUND, f"{len(statements)} queries for a path's history"
    # Paged: the cursor continues where the page ended.
    page = (await client.get(f"/v1/repos/many/commits/{head}/log", params={"limit": 10})).json()
    assert page["next_cursor"] == commits[-11]["id"]
    rest = await client.get(
        f"/v1/repos/many/commits/{head}/log",
        params={"limit": MANY, "cursor": page["next_cursor"]},
    )
    assert len(rest.json()["items"]) == MANY - 10


# --- comparing trees: batches of tree nodes per level, not a query per changed directory ----

DIRECTORIES = 60
# Root, the 60 d.. and the 60 sub directories, each level read ``PER_READ`` directories at a
# time, and the lookup of the compared path.
TREE_READS = 1 + 2 * math.ceil(DIRECTORIES / treewalk.PER_READ) + 1


def _tree_reads(statements: list[str]) -> int:
    """Statements reading nodes (a merge also reads the packed references of the nodes it
    splices rows into, a few rows per batch of nodes it writes)."""
    return sum(
        1
        for s in statements
        if s.lstrip().upper().startswith("SELECT") and "repo_trees.entries" in s
    )


async def test_diff_and_merge_read_tree_nodes_in_batches_not_per_directory(
    repo_ctx: Context, client: httpx.AsyncClient
) -> None:
    """Two branches each change one file in every one of 60 directories three levels deep:
    read one node at a time, a diff reads 120 nodes and a merge 180, each a query."""

    def files(version: str, which: int | None) -> dict[str, bytes]:
        return {
            f"/d{i:02}/sub/f{j}": f"{version if j == which else 'base'} {i} {j}".encode()
            for i in range(DIRECTORIES)
            for j in range(3)
        }

    assert (await client.post("/v1/repos", json={"name": "wide"})).status_code == 201
    await commit_files(client, "wide", files("base", None))
    for branch, which in (("a", 0), ("b", 1)):
        response = await client.post(
            "/v1/repos/wide/branches", json={"name": branch, "head": "master"}
        )
        assert response.status_code == 201, response.text
        changed = {p: d for p, d in files(branch, which).items() if p.endswith(f"/f{which}")}
        await commit_files(client, "wide", changed, branch=branch)

    with counted(repo_ctx) as statements:
        response = await client.get("/v1/repos/wide/commits/b/diff", params={"from": "master"})
    assert response.status_code == 200, response.text
    changes = response.json()["changes"]
    assert sorted(c["path"] for c in changes) == [f"/d{i:02}/sub/f1" for i in range(DIRECTORIES)]
    assert _tree_reads(statements) <= TREE_READS, f"{_tree_reads(statements)} tree-node queries"

    with counted(repo_ctx) as statements:
        response = await client.post("/v1/repos/wide/merge", json={"source": "b", "into": "a"})
    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "merged"
    assert response.json()["changed_paths"] == DIRECTORIES
    assert _tree_reads(statements) <= TREE_READS, f"{_tree_reads(statements)} tree-node queries"
    for i in (0, DIRECTORIES - 1):
        assert await read(client, "wide", "a", f"/d{i:02}/sub/f0") == f"a {i} 0".encode()
        assert await read(client, "wide", "a", f"/d{i:02}/sub/f1") == f"b {i} 1".encode()
        assert await read(client, "wide", "a", f"/d{i:02}/sub/f2") == f"base {i} 2".encode()
