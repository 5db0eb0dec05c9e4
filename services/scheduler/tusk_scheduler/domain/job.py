"""What the phases of a job's execution share: the dependencies, the job as a value, the
exceptions that end a step, and the execution's scope (stopping, cancel pokes, results read).

The phases (:mod:`.starting`, :mod:`.running`, :mod:`.ending`) hand each other values: a
phase that changes the job's row returns the job as the row now says, instead of mutating a
shared object, so that each phase can be read, and tested, on its own.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from pydantic import ValidationError

from tusk.client import RepoClient
from tusk.db import Database
from tusk.errors import Unavailable
from tusk.events.outbox import OutboxWriter
from tusk.events.types import DatumCounts
from tusk.pipelines import PipelineSpec
from tusk.pipelines.units import format_duration
from tusk_scheduler import store
from tusk_scheduler.config import SchedulerSettings
from tusk_scheduler.domain.credentials import WorkerCredentials
from tusk_scheduler.domain.results import ResultReader
from tusk_scheduler.metrics import Metrics
from tusk_scheduler.runners.base import Runner
from tusk_scheduler.tables import JobRow

log = structlog.get_logger()

# Worth waiting out: the repo service or the database did not answer.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (Unavailable, OSError, TimeoutError)
MAX_NAMED = 5  # failed datums or collisions spelled out in a job's reason


class JobFailure(Exception):
    """The job cannot succeed; ``reason`` says why, for users."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Stop(Exception):
    """The scheduler is shutting down: leave the job where it is (workers keep running)."""


class Cancel(Exception):
    """A job.cancel arrived for the job."""


@dataclass(frozen=True)
class Deps:
    """What executing jobs needs from the process context."""

    settings: SchedulerSettings
    db: Database
    repos: RepoClient
    runner: Runner
    outbox: OutboxWriter
    results: ResultReader
    metrics: Metrics


@dataclass(frozen=True)
class JobView:
    """A job's row as one phase read or wrote it; the next phase gets a new one
    (``dataclasses.replace``), never a mutated one."""

    id: str
    pipeline: str
    version: int
    spec: dict[str, Any]
    inputs: list[dict[str, str]]
    global_id: str
    output_repo: str
    output_branch: str
    state: str
    output_commit: str | None
    meta_commit: str | None
    cancel_reason: str | None
    counts: dict[str, int]
    started_at: datetime | None

    @classmethod
    def of(cls, row: JobRow) -> JobView:
        return cls(
            id=row.id,
            pipeline=row.pipeline,
            version=row.version,
            spec=row.spec,
            inputs=row.inputs,
            global_id=row.global_id,
            output_repo=row.output_repo,
            output_branch=row.output_branch,
            state=row.state,
            output_commit=row.output_commit,
            meta_commit=row.meta_commit,
            cancel_reason=row.cancel_reason,
            counts=row.counts,
            started_at=row.started_at,
        )

    def commits(self) -> tuple[str, str]:
        """The output and meta commits, which every phase after starting has."""
        assert self.output_commit is not None
        assert self.meta_commit is not None
        return self.output_commit, self.meta_commit


class Scope:
    """One execution of one job: what outlives its steps (the scheduler stopping, cancel
    pokes, the job's worker credential, the results files already read)."""

    def __init__(self, deps: Deps, job: str, stopping: asyncio.Event) -> None:
        self.deps = deps
        self.job = job
        self.stopping = stopping
        self.poked = asyncio.Event()
        # Results batch files of the meta commit already read: they never change.
        self.seen_results: set[str] = set()
        self.credentials = WorkerCredentials(deps.repos, enabled=deps.settings.token is not None)
        self.log = log.bind(job=job)

    async def load(self) -> JobView:
        async with self.deps.db.session(write=False) as session:
            return JobView.of(await store.get_job(session, self.job))

    async def check_cancel(self) -> None:
        if self.poked.is_set():
            self.poked.clear()
            if (await self.load()).cancel_reason is not None:
                raise Cancel

    def check_stop(self) -> None:
        if self.stopping.is_set():
            raise Stop

    async def sleep(self, seconds: float) -> None:
        """Sleep, cut short by a poke or by the scheduler stopping."""
        stop = asyncio.ensure_future(self.stopping.wait())
        poke = asyncio.ensure_future(self.poked.wait())
        try:
            await asyncio.wait([stop, poke], timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            poke.cancel()

    def finished(self, job: JobView, state: str, now: datetime) -> None:
        self.deps.metrics.jobs_finished.labels(state).inc()
        if job.started_at is not None:
            self.deps.metrics.job_seconds.observe((now - job.started_at).total_seconds())


class Progress:
    """When the next job.progress event is due: counts changed and the interval passed."""

    def __init__(self, counts: DatumCounts | None, interval: float) -> None:
        self.counts = counts or DatumCounts()
        self.interval = interval
        self._last_sent = self.counts
        self._sent_at = time.monotonic()

    def due(self, counts: DatumCounts) -> bool:
        return counts != self._last_sent and time.monotonic() - self._sent_at >= self.interval

    def sent(self, counts: DatumCounts) -> None:
        self._last_sent = counts
        self._sent_at = time.monotonic()


async def together(*steps: Awaitable[Any]) -> list[Any]:
    """Run independent steps at once and let every one end; then the first failure is raised
    (as itself, for the caller's ``except`` clauses). A failure does not cancel the others: a
    request under way (opening the meta commit) would be carried out by the service all the
    same, after the failure's handling had looked for what the start opened, and the commit
    would be left open."""
    tasks = [asyncio.ensure_future(step) for step in steps]
    try:
        results = await asyncio.gather(*tasks, return_exceptions=True)
    except BaseException:  # cancelled from outside
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


def spec_of(job: JobView) -> PipelineSpec:
    try:
        return PipelineSpec.model_validate(job.spec)
    except ValidationError as e:
        raise JobFailure(f"the job's pipeline spec is not valid: {e}") from None


def identity(job: JobView) -> str:
    return spec_of(job).datum_identity()


def description(job: JobView, kind: str) -> str:
    """What the job's output or meta commit says it is: how a restarted start knows it."""
    return f"tusk job {job.id} ({kind})"


DESCRIPTION = re.compile(r"tusk job (?P<job>[0-9a-f]+) \((?:output|meta)\)")


def duration(spec: PipelineSpec) -> str:
    return format_duration(spec.job_timeout) if spec.job_timeout is not None else "none"


def deadline(job: JobView, spec: PipelineSpec) -> float | None:
    if spec.job_timeout is None or job.started_at is None:
        return None
    return job.started_at.timestamp() + spec.job_timeout.total_seconds()
