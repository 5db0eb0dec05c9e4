from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tusk.client.repo import RepoClient
from tusk.db import Database
from tusk.events.bus import decode
from tusk.events.envelope import Envelope, EventData
from tusk.events.memory import MemoryBus
from tusk.events.types import JOBS_TOPIC, CommitFinished
from tusk_repo.app import create_app as create_repo_app
from tusk_repo.context import Context as RepoContext
from tusk_trigger.app import create_app
from tusk_trigger.config import TriggerSettings
from tusk_trigger.context import build_context


@dataclass
class Harness:
    api: httpx.AsyncClient  # the trigger's API
    repos: RepoClient  # the repo service's
    bus: MemoryBus
    db: Database  # the trigger's own

    async def commit(
        self,
        repo: str,
        files: dict[str, bytes],
        *,
        branch: str = "master",
        error: str | None = None,
    ) -> str:
        """Commit through the repo API, then announce it as the repo service would."""
        started = await self.repos.start_commit(repo, branch)
        for path, data in files.items():
            await self.repos.put_file(repo, started.id, path, data)
        done = await self.repos.finish_commit(repo, started.id, error=error)
        await self.announce(
            CommitFinished(
                repo=repo,
                commit=done.id,
                branch=branch,
                parent=done.parent,
                global_id=done.global_id,
                finished_at=done.finished_at or done.started_at,
                size_bytes=done.size_bytes or 0,
                file_count=done.file_count or 0,
                error=error,
            )
        )
        return done.id

    async def announce(self, *events: EventData) -> None:
        await self.bus.publish([Envelope.wrap(e, source="tests") for e in events])

    async def job_events(self) -> list[Envelope]:
        subscription = await self.bus.subscribe([JOBS_TOPIC], group=None)
        try:
            records = await subscription.fetch(max_records=1000, max_wait=0.2)
        finally:
            await subscription.close()
        return [decode(r) for r in records]

    async def eventually(self, check: Callable[[], Awaitable[Any]], timeout: float = 10) -> Any:
        async with asyncio.timeout(timeout):
            while True:
                result = await check()
                if result:
                    return result
                await asyncio.sleep(0.05)


@asynccontextmanager
async def running_trigger(
    repo_ctx: RepoContext, database_url: str, tmp_path: Path
) -> AsyncIterator[Harness]:
    """The trigger service on ``database_url`` over an in-process repo service and a memory
    bus; leaving the block stops it (its rows stay in its database)."""
    bus = MemoryBus()
    transport = httpx.ASGITransport(app=create_repo_app(context=repo_ctx))
    settings = TriggerSettings(  # type: ignore[call-arg]
        data_dir=tmp_path, database_url=database_url, TUSK_TRIGGER_CRON_INTERVAL=0.1
    )
    async with (
        RepoClient("http://repo", transport=transport) as repos,
        build_context(settings, bus, repos) as context,
    ):
        app = create_app(context=context)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://trigger"
        ) as api:
            yield Harness(api, repos, bus, context.db)


@pytest.fixture
async def harness(repo_ctx: RepoContext, tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_trigger(
        repo_ctx, f"sqlite+aiosqlite:///{tmp_path / 'trigger.db'}", tmp_path
    ) as running:
        yield running
