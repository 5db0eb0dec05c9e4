"""The spout's side: a spout pipeline's command commits into its output repo by itself, each
``async with spout_commit() as commit: await commit.put(path, data)`` one commit, finished at
the end of the block (abandoned if the block raises, so a commit is all or nothing). With
``spout.overwrite`` each commit starts empty: it replaces what the previous ones held.

The scheduler that runs the command sets ``TUSK_REPO_URL`` (and ``TUSK_TOKEN`` when the
services check tokens), ``TUSK_OUTPUT_REPO``, ``TUSK_OUTPUT_BRANCH`` and ``PPS_PIPELINE_NAME``:
the output repo belongs to the pipeline, and a commit on it names the pipeline it is opened by.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from tusk.client import RepoClient
from tusk.errors import Conflict, NotFound
from tusk.wire.repo import CommitInfo
from tusk.worker.config import DEFAULT_REPO_URL


class SpoutSettings(BaseSettings):
    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore")

    repo_url: str = Field(default=DEFAULT_REPO_URL, alias="TUSK_REPO_URL")
    token: str | None = Field(default=None, alias="TUSK_TOKEN")
    # Qualified (p/x); PPS_PIPELINE_NAME is the name within its project, as in Pachyderm.
    pipeline: str = Field(validation_alias=AliasChoices("TUSK_PIPELINE", "PPS_PIPELINE_NAME"))
    output_repo: str = Field(alias="TUSK_OUTPUT_REPO")
    output_branch: str = Field(default="master", alias="TUSK_OUTPUT_BRANCH")
    overwrite: bool = Field(default=False, alias="TUSK_SPOUT_OVERWRITE")
    """``spout.overwrite``: each commit replaces what the previous ones held."""


@dataclass
class SpoutCommit:
    client: RepoClient
    repo: str
    id: str

    async def put(self, path: str, data: bytes) -> None:
        await self.client.put_file(self.repo, self.id, path, data)

    async def delete(self, path: str) -> None:
        await self.client.delete_file(self.repo, self.id, path)


@contextlib.asynccontextmanager
async def spout_commit(
    description: str = "", *, settings: SpoutSettings | None = None
) -> AsyncIterator[SpoutCommit]:
    """One commit on the spout's output branch."""
    settings = settings or SpoutSettings()
    async with RepoClient(settings.repo_url, token=settings.token) as client:
        try:
            started = await _start(client, settings, description)
        except Conflict:
            # Only this spout writes its output branch, one process at a time: an open
            # commit there was left by a process that died mid-commit. Nothing of it counts.
            page = await client.list_commits_page(
                settings.output_repo, branch=settings.output_branch, state="open", limit=10
            )
            for leftover in page.items:
                await client.abandon_commit(settings.output_repo, leftover.id)
            started = await _start(client, settings, description)
        try:
            if settings.overwrite and started.parent is not None:
                with contextlib.suppress(NotFound):  # nothing there yet
                    await client.delete_file(settings.output_repo, started.id, "/")
            yield SpoutCommit(client, settings.output_repo, started.id)
        except BaseException:
            with contextlib.suppress(Exception):
                await client.abandon_commit(settings.output_repo, started.id)
            raise
        await client.finish_commit(settings.output_repo, started.id)


async def _start(client: RepoClient, settings: SpoutSettings, description: str) -> CommitInfo:
    return await client.start_commit(
        settings.output_repo,
        settings.output_branch,
        description=description,
        pipeline=settings.pipeline,
    )
