"""A finish leaves its staged rows to be cleared after its transaction (tusk_repo.staging):
they go soon after, in batches, and rows a crash left behind are never read and are swept."""

from __future__ import annotations

import httpx
from sqlalchemy import func, select

from tests.repo.helpers import ok, read, tar_of
from tusk_repo.context import Context
from tusk_repo.staging import StagedCleaner
from tusk_repo.tables import StagedRow


async def _staged_rows(ctx: Context, commit_id: str | None = None) -> int:
    query = select(func.count()).select_from(StagedRow)
    if commit_id is not None:
        query = query.where(StagedRow.commit_id == commit_id)
    async with ctx.db.session(write=False) as session:
        return int(await session.scalar(query) or 0)


async def _stage(client: httpx.AsyncClient, files: dict[str, bytes], *deletes: str) -> str:
    commit = ok(await client.post("/v1/repos/data/commits", json={}), 201)
    for path in deletes:
        ok(
            await client.delete(
                f"/v1/repos/data/commits/{commit['id']}/file", params={"path": path}
            ),
            204,
        )
    ok(
        await client.post(
            f"/v1/repos/data/commits/{commit['id']}/files",
            content=tar_of(files),
            headers={"Content-Type": "application/x-tar"},
        ),
        201,
    )
    return str(commit["id"])


async def _names(client: httpx.AsyncClient, ref: str) -> list[str]:
    listed = ok(await client.get(f"/v1/repos/data/commits/{ref}/list", params={"path": "/"}))
    return sorted(item["path"] for item in listed["items"])


async def test_a_finish_clears_its_staged_rows_after_its_transaction(
    client: httpx.AsyncClient, repo_ctx: Context
) -> None:
    ok(await client.post("/v1/repos", json={"name": "data"}), 201)
    commit_id = await _stage(client, {f"f{i}": b"x%d" % i for i in range(20)})
    assert await _staged_rows(repo_ctx, commit_id) == 20
    finished = ok(await client.post(f"/v1/repos/data/commits/{commit_id}/finish"))
    assert finished["file_count"] == 20
    await repo_ctx.staged.idle()
    assert await _staged_rows(repo_ctx, commit_id) == 0
    assert await read(client, "data", commit_id, "/f7") == b"x7"


async def test_the_rows_are_cleared_in_batches_to_the_last(
    client: httpx.AsyncClient, repo_ctx: Context
) -> None:
    ok(await client.post("/v1/repos", json={"name": "data"}), 201)
    commit_id = await _stage(client, {f"f{i:02}": b"x" for i in range(10)})
    async with repo_ctx.db.session() as session:
        row = await repo_ctx.service.get_repo(session, "data")
        await repo_ctx.service.finish_commit(session, row, commit_id, clear_staged=False)
    await StagedCleaner(repo_ctx.db, batch=3).clear(commit_id)  # 3 + 3 + 3 + 1
    assert await _staged_rows(repo_ctx, commit_id) == 0


async def test_rows_left_by_a_crash_are_never_read_and_are_swept(
    client: httpx.AsyncClient, repo_ctx: Context
) -> None:
    ok(await client.post("/v1/repos", json={"name": "data"}), 201)
    first = await _stage(client, {"a": b"A", "b": b"B"})
    ok(await client.post(f"/v1/repos/data/commits/{first}/finish"))
    # The second commit deletes /a and puts /c, and its finish "crashes" before the clearing.
    second = await _stage(client, {"c": b"C"}, "/a")
    async with repo_ctx.db.session() as session:
        row = await repo_ctx.service.get_repo(session, "data")
        await repo_ctx.service.finish_commit(session, row, second, clear_staged=False)
    assert await _staged_rows(repo_ctx, second) == 2  # the delete of /a and the put of /c
    assert await _names(client, second) == ["/b", "/c"]
    # A new open commit on the branch sees the finished tree and its own changes only.
    third = await _stage(client, {"d": b"D"})
    assert await _names(client, third) == ["/b", "/c", "/d"]
    ok(await client.post(f"/v1/repos/data/commits/{third}/finish"))
    assert await _names(client, "master") == ["/b", "/c", "/d"]
    await repo_ctx.staged.idle()
    assert await _staged_rows(repo_ctx, second) == 2
    await repo_ctx.staged.sweep()
    assert await _staged_rows(repo_ctx) == 0
    assert await read(client, "data", second, "/c") == b"C"


async def test_garbage_collection_also_deletes_the_leftovers(
    client: httpx.AsyncClient, repo_ctx: Context
) -> None:
    ok(await client.post("/v1/repos", json={"name": "data"}), 201)
    commit_id = await _stage(client, {"a": b"A"})
    async with repo_ctx.db.session() as session:
        row = await repo_ctx.service.get_repo(session, "data")
        await repo_ctx.service.finish_commit(session, row, commit_id, clear_staged=False)
    still_open = await _stage(client, {"b": b"B"}, "/a")  # on another commit: kept
    assert await _staged_rows(repo_ctx, commit_id) == 1
    await repo_ctx.collector.run()
    assert await _staged_rows(repo_ctx, commit_id) == 0
    assert await _staged_rows(repo_ctx, still_open) == 2
    assert await read(client, "data", commit_id, "/a") == b"A"
    ok(await client.post(f"/v1/repos/data/commits/{still_open}/finish"))
    assert await _names(client, "master") == ["/b"]
