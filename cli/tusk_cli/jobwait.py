"""``tusk job wait``: wait for a job, or for the job one change will make, and say why it
cannot come as soon as it cannot.

A job of pipeline P for change G (a global id) cannot come when: P does not exist; G began in
no repo P reads from, directly or through other pipelines; G's commit was finished before P was
created (P ran on it with a first job of its own); or a job for G upstream of P failed or was
killed (nothing downstream runs on a failed commit). A transient failure of the services while
waiting (a 5xx, a refused connection) is retried until the deadline.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tusk.client import RepoClient
from tusk.client.models import CommitInfo, JobInfo, PipelineInfo
from tusk.client.pipelines import TriggerClient
from tusk.errors import InvalidArgument, NotFound, TuskError, Unavailable
from tusk_cli.common import connect, connect_trigger, note, stderr

T = TypeVar("T")

FAILED_STATES = ("failure", "killed")
RECENT_JOBS = 200
"""Jobs of an upstream pipeline looked through for the change (newest first)."""
_POLL_FIRST, _POLL_MAX = 0.2, 2.0


class JobCannotCome(InvalidArgument):
    """The awaited job will never be made."""


@dataclass(frozen=True)
class Dag:
    """The pipelines upstream of one, as far as their input and output repos say."""

    pipeline: PipelineInfo
    upstream: list[PipelineInfo]
    """Every pipeline whose output P reads, directly or not (nearest first)."""
    sources: list[str]
    """The repos at the top: read by P or an upstream pipeline, written by none."""


async def retrying(
    call: Callable[[], Awaitable[T]], deadline: float, what: str
) -> T:
    """``call()``, retried with backoff while the service is unavailable or answers a 5xx."""
    loop = asyncio.get_running_loop()
    delay = _POLL_FIRST
    warned = False
    while True:
        try:
            return await call()
        except TuskError as e:
            transient = isinstance(e, Unavailable) or e.status_code >= 500
            if not transient or loop.time() + delay >= deadline:
                raise
            if not warned:
                note(f"[yellow]{escape(what)}: {escape(e.message)}; retrying[/]")
                warned = True
        await asyncio.sleep(delay)
        delay = min(delay * 2, _POLL_MAX)


async def dag_of(trigger: TriggerClient, name: str) -> Dag:
    pipelines = {p.name: p for p in await trigger.list_pipelines()}
    if name not in pipelines:
        known = ", ".join(sorted(pipelines)) or "none yet"
        raise NotFound(f"pipeline {name!r} does not exist (pipelines: {known})")
    by_output = {p.output_repo: p for p in pipelines.values()}
    upstream: list[PipelineInfo] = []
    sources: list[str] = []
    queue = list(pipelines[name].input_repos)
    seen: set[str] = set()
    while queue:
        repo = queue.pop(0)
        if repo in seen:
            continue
        seen.add(repo)
        producer = by_output.get(repo)
        if producer is None:
            sources.append(repo)
        else:
            upstream.append(producer)
            queue.extend(producer.input_repos)
    return Dag(pipelines[name], upstream, sources)


async def origin_of(repo: RepoClient, dag: Dag, global_id: str) -> CommitInfo | None:
    """The commit that started change ``global_id`` in one of the DAG's source repos."""
    for source in dag.sources:
        try:
            commit = await repo.inspect_commit(source, global_id)
        except (NotFound, InvalidArgument):
            continue
        if commit.global_id == commit.id:
            return commit
    return None


async def find_job(
    trigger: TriggerClient, pipeline: str, global_id: str, limit: int = RECENT_JOBS
) -> JobInfo | None:
    seen = 0
    async for job in trigger.list_jobs(pipeline=pipeline):
        if job.global_id == global_id:
            return job
        seen += 1
        if seen >= limit:
            return None
    return None


async def job_for_change(pipeline: str, global_id: str, deadline: float) -> str:
    """The id of the job ``pipeline`` makes for change ``global_id``, once it exists."""
    loop = asyncio.get_running_loop()
    async with connect_trigger() as trigger, connect() as repo:
        dag = await retrying(lambda: dag_of(trigger, pipeline), deadline, "listing pipelines")
        origin = await retrying(
            lambda: origin_of(repo, dag, global_id), deadline, "looking up the change"
        )
        if origin is None:
            raise JobCannotCome(
                f"change {global_id} did not start in a repo that {pipeline} reads from "
                f"({', '.join(dag.sources)}): no job of {pipeline} will come for it; give the "
                "id of the commit you made there (`tusk commit inspect REPO@BRANCH --json`)"
            )
        where = f"{origin.repo}@{origin.branch or origin.id}"
        note(
            f"waiting for the job of [bold]{escape(pipeline)}[/] for change {global_id} "
            f"(commit {origin.id} on {escape(where)}"
            + (f", via {', '.join(escape(p.name) for p in dag.upstream)}" if dag.upstream else "")
            + ")"
        )
        opened_warned = False
        delay = _POLL_FIRST
        while True:
            job = await retrying(
                lambda: find_job(trigger, pipeline, global_id), deadline, "listing jobs"
            )
            if job is not None:
                return job.id
            origin = await retrying(
                functools.partial(repo.inspect_commit, origin.repo, origin.id),
                deadline,
                "reading the change",
            )
            if origin.state == "open" and not opened_warned:
                note(f"commit {origin.id} is still open: the job comes once it is finished")
                opened_warned = True
            if origin.finished_at is not None and origin.finished_at < dag.pipeline.created_at:
                raise JobCannotCome(
                    f"commit {origin.id} was finished before pipeline {pipeline} was created: "
                    f"no job of {pipeline} will come for change {global_id} (the pipeline ran "
                    f"on it with a first job of its own: `tusk job list -p {pipeline}`)"
                )
            if origin.error is not None:
                raise JobCannotCome(
                    f"commit {origin.id} was finished as failed ({origin.error}): no job of "
                    f"{pipeline} will come for change {global_id}"
                )
            for up in dag.upstream:
                upjob = await retrying(
                    functools.partial(find_job, trigger, up.name, global_id),
                    deadline,
                    "listing jobs",
                )
                if upjob is not None and upjob.state in FAILED_STATES:
                    raise JobCannotCome(
                        f"upstream job {upjob.id} of {up.name} ended {upjob.state}"
                        + (f" ({upjob.reason})" if upjob.reason else "")
                        + f": no job of {pipeline} will come for change {global_id}"
                    )
            if loop.time() >= deadline:
                raise InvalidArgument(
                    f"no job of {pipeline} for change {global_id} appeared in time"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, _POLL_MAX)


async def wait(
    job: str | None, pipeline: str | None, global_id: str | None, seconds: float
) -> JobInfo:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    if job is None:
        assert pipeline is not None
        assert global_id is not None
        job = await job_for_change(pipeline, global_id, deadline)
    async with connect_trigger() as client:
        info = await retrying(
            functools.partial(client.inspect_job, job), deadline, "reading the job"
        )
        job = info.id
        note(f"waiting for job {info.id} of [bold]{escape(info.pipeline)}[/] ({info.state})")
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=stderr,
            transient=True,
        ) as progress:
            task = progress.add_task(f"job {job[:8]} {info.state}", total=info.counts.total or None)
            while not info.ended and loop.time() < deadline:
                left = min(2.0, max(0.0, deadline - loop.time()))
                info = await retrying(
                    functools.partial(client.wait_job, job, seconds=left),
                    deadline,
                    "waiting for the job",
                )
                progress.update(
                    task,
                    description=f"job {job[:8]} {info.state}",
                    total=info.counts.total or None,
                    completed=info.counts.done,
                )
    if not info.ended:
        raise InvalidArgument(
            f"job {info.id} is still {info.state} after {seconds:g} s "
            f"({info.counts.done}/{info.counts.total} datums done)"
        )
    if info.state == "success" and info.reason:
        note(f"[yellow]warning: job {info.id} {escape(info.reason)}[/]")
    note(
        f"job {info.id} {info.state}"
        + (f": {escape(info.reason)}" if info.reason else "")
        + f" ({info.counts.processed} processed, {info.counts.skipped} skipped, "
        f"{info.counts.failed} failed)"
    )
    return info
