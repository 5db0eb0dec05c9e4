"""``spout_commit``: a spout's commits on its own output repo (named as its pipeline's), each
all or nothing; ``spout.overwrite`` makes each one replace the last; a commit a dead process
left open is abandoned before the next."""

from __future__ import annotations

import uuid

import pytest

from tusk.client import RepoClient
from tusk.worker.spout import SpoutSettings, spout_commit


async def _files(repo: RepoClient, name: str) -> list[str]:
    return sorted([f.path async for f in repo.walk(name, "master")])


@pytest.mark.parametrize("overwrite", [False, True])
async def test_commits_one_per_block(repo: RepoClient, repo_url: str, overwrite: bool) -> None:
    name = f"spout-{uuid.uuid4().hex[:8]}"
    await repo.create_repo(name, pipeline=name)  # owned: only its pipeline commits to it
    settings = SpoutSettings(
        TUSK_REPO_URL=repo_url, PPS_PIPELINE_NAME=name, TUSK_OUTPUT_REPO=name,
        TUSK_SPOUT_OVERWRITE=overwrite,
    )  # fmt: skip
    async with spout_commit("first", settings=settings) as commit:
        await commit.put("/a", b"1")
    async with spout_commit("second", settings=settings) as commit:
        await commit.put("/b", b"2")
    assert await _files(repo, name) == (["/b"] if overwrite else ["/a", "/b"])

    async def broken_block() -> None:
        async with spout_commit("third", settings=settings) as commit:
            await commit.put("/c", b"3")
            raise RuntimeError("broken")

    with pytest.raises(RuntimeError, match="broken"):
        await broken_block()
    assert "/c" not in await _files(repo, name)  # all or nothing

    # A process that died mid-commit left one open: the next commit abandons it first.
    await repo.start_commit(name, "master", pipeline=name)
    async with spout_commit("after a crash", settings=settings) as commit:
        await commit.put("/d", b"4")
    assert "/d" in await _files(repo, name)
