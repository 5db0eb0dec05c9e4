"""The other services, as one user of the console sees them: their public APIs, called with
that user's token. The console adds paged reads the CLI's clients do not need."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import httpx

from tusk.client.http import params, seg
from tusk.client.inference import InferenceClient
from tusk.client.models import DatumInfo, FileInfo, JobInfo, Page
from tusk.client.pipelines import SchedulerClient, TriggerClient
from tusk.client.repo import RepoClient
from tusk_console.config import ConsoleSettings


class ConsoleTrigger(TriggerClient):
    async def jobs_page(
        self, *, pipeline: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> Page[JobInfo]:
        response = await self._request(
            "GET", "/v1/jobs", params=params(pipeline=pipeline, limit=limit, cursor=cursor)
        )
        return self._parse(Page[JobInfo], response)


class ConsoleScheduler(SchedulerClient):
    async def datums_page(
        self, job: str, *, state: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> Page[DatumInfo]:
        response = await self._request(
            "GET",
            f"/v1/jobs/{seg(job)}/datums",
            params=params(state=state, limit=limit, cursor=cursor),
        )
        return self._parse(Page[DatumInfo], response)


class ConsoleRepo(RepoClient):
    async def list_page(
        self, repo: str, ref: str, path: str, *, limit: int, cursor: str | None = None
    ) -> Page[FileInfo]:
        response = await self._request(
            "GET",
            f"/v1/repos/{seg(repo)}/commits/{seg(ref)}/list",
            params=params(path=path, limit=limit, cursor=cursor),
        )
        return self._parse(Page[FileInfo], response)


class ConsoleInference(InferenceClient):
    async def metrics_text(self) -> str:
        """The Prometheus exposition (public, like every service's /metrics)."""
        return (await self._request("GET", "/metrics")).text


@dataclass
class Backends:
    repo: ConsoleRepo
    trigger: ConsoleTrigger
    scheduler: ConsoleScheduler
    inference: ConsoleInference
    _stack: AsyncExitStack

    @classmethod
    def open(
        cls, settings: ConsoleSettings, token: str | None, transport: httpx.AsyncBaseTransport
    ) -> Backends:
        stack = AsyncExitStack()
        clients = (
            ConsoleRepo(settings.repo_url, token, transport=transport),
            ConsoleTrigger(settings.trigger_url, token, transport=transport),
            ConsoleScheduler(settings.scheduler_url, token, transport=transport),
            ConsoleInference(settings.inference_url, token, transport=transport),
        )
        for client in clients:
            stack.push_async_callback(client.aclose)
        return cls(*clients, _stack=stack)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()
