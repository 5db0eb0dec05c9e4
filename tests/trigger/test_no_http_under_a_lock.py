"""The trigger never calls the repo service while one of its write transactions is open: such
a call would hold row locks (and, in embedded mode, the process-wide SQLite write lock) for as
long as the other service takes to answer."""

from __future__ import annotations

import contextvars
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from tests.repo.helpers import ok
from tests.trigger.conftest import Harness
from tusk.client.repo import RepoClient
from tusk.db import Database
from tusk.events.memory import MemoryBus
from tusk_repo.app import create_app as create_repo_app
from tusk_repo.context import Context as RepoContext
from tusk_trigger.app import create_app
from tusk_trigger.config import TriggerSettings
from tusk_trigger.context import build_context

_writing: contextvars.ContextVar[bool] = contextvars.ContextVar("writing", default=False)


class Watched(httpx.AsyncBaseTransport):
    """Records each request to the repo service made inside a write transaction."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.calls = 0
        self.under_lock: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if _writing.get():
            self.under_lock.append(f"{request.method} {request.url.path}")
        return await self.inner.handle_async_request(request)


@pytest.fixture
async def watched(
    repo_ctx: RepoContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Harness, Watched]]:
    opened = Database.session

    @asynccontextmanager
    async def session(self: Database, *, write: bool = True) -> AsyncIterator[AsyncSession]:
        async with opened(self, write=write) as s:
            token = _writing.set(_writing.get() or write)
            try:
                yield s
            finally:
                _writing.reset(token)

    monkeypatch.setattr(Database, "session", session)
    transport = Watched(httpx.ASGITransport(app=create_repo_app(context=repo_ctx)))
    bus = MemoryBus()
    settings = TriggerSettings(  # type: ignore[call-arg]
        data_dir=tmp_path,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'trigger.db'}",
        TUSK_TRIGGER_CRON_INTERVAL=0.1,
    )
    async with (
        RepoClient("http://repo", transport=transport) as repos,
        build_context(settings, bus, repos) as context,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(context=context)),
            base_url="http://trigger",
        ) as api,
    ):
        yield Harness(api, repos, bus, context.db), transport


def _cross(name: str) -> str:
    return json.dumps(
        {
            "pipeline": {"name": name},
            "input": {
                "cross": [
                    {"pfs": {"repo": "left", "glob": "/*"}},
                    {"pfs": {"repo": "right", "glob": "/"}},
                    {"cron": {"name": "tick", "spec": "@every 1h"}},
                ]
            },
            "transform": {"cmd": ["true"]},
        }
    )


async def _jobs(h: Harness, pipeline: str) -> list[dict[str, object]]:
    items: list[dict[str, object]] = ok(await h.api.get("/v1/jobs", params={"pipeline": pipeline}))[
        "items"
    ]
    return items


async def test_no_call_to_the_repo_service_inside_a_write_transaction(
    watched: tuple[Harness, Watched],
) -> None:
    h, transport = watched
    for repo in ("left", "right"):
        await h.repos.create_repo(repo)
    await h.commit("left", {"/a": b"1"})
    await h.commit("right", {"/b": b"2"})

    # Created on inputs that hold commits: the first job reads every input's head.
    ok(await h.api.post("/v1/pipelines", content=_cross("both")), 201)
    assert len(await _jobs(h, "both")) == 1
    # A commit to one input: the job reads the heads of the others.
    await h.commit("left", {"/c": b"3"})
    await h.eventually(lambda: _more_than(h, "both", 1))
    # A new version run at once, a stop and a start: each reads the heads again.
    ok(await h.api.put("/v1/pipelines/both?reprocess=true", content=_cross("both")))
    assert len(await _jobs(h, "both")) == 3
    ok(await h.api.post("/v1/pipelines/both/stop"))
    ok(await h.api.post("/v1/pipelines/both/start"))
    ok(await h.api.delete("/v1/pipelines/both"), 204)

    assert transport.calls > 20  # the repo service was asked, through the watched transport
    assert transport.under_lock == []


async def _more_than(h: Harness, pipeline: str, n: int) -> bool:
    return len(await _jobs(h, pipeline)) > n
