"""Cron inputs. A tick is a commit to the input's cron repo holding a file named after the tick
time; the commit's ``commit.finished`` triggers the pipeline like any input change, so a tick
runs the pipeline against the latest commits of its other inputs."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime

import structlog

from tusk.client.repo import RepoClient
from tusk.errors import TuskError
from tusk.pipelines.spec import cron_tick_path

log = structlog.get_logger()


async def commit_tick(repos: RepoClient, repo: str, at: datetime, *, overwrite: bool) -> str:
    """Commit one tick; returns the commit id. A tick is idempotent: its file is named after
    its time, so committing it twice changes nothing a pipeline would process again."""
    path = cron_tick_path(at)
    name = path.lstrip("/")
    commit = await repos.start_commit(repo, branch="master", description=f"cron tick {name}")
    try:
        if overwrite:
            with contextlib.suppress(TuskError):  # nothing to delete in the first tick
                await repos.delete_file(repo, commit.id, "/")
        await repos.put_file(repo, commit.id, path, name.encode())
        await repos.finish_commit(repo, commit.id)
    except BaseException:
        await asyncio.shield(_abandon(repos, repo, commit.id))
        raise
    return commit.id


async def _abandon(repos: RepoClient, repo: str, commit: str) -> None:
    try:
        await repos.abandon_commit(repo, commit)
    except TuskError as e:
        log.warning("could not abandon tick commit", repo=repo, commit=commit, error=str(e))
