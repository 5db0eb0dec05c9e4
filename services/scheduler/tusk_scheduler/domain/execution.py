"""Executing one job: ``created → starting → running → finishing → success | failure | killed``.

Every step is written so that doing it again after a crash is harmless, because that is how
a restarted scheduler resumes: it runs the step of the state the job row is in.

- **starting** opens the output commit empty (provenance: the input commits; global id: the
  job's: the output is exactly the carried-forward outputs plus the new datums' outputs) and the
  meta commit; their ids are recorded with the start, and a commit opened by a start that
  failed or crashed first is recognised by its description, adopted and emptied (or, should
  the job fail meanwhile, finished). It computes the datums, writes the shard
  specs (unless the runner hands them to the workers: then once they are under way), then
  records datums, shards and ``running`` in one transaction; the outputs of the datums an
  earlier job of the same pipeline version processed are linked once the workers start.
  Repeating it redoes all of that, and nothing else has touched the output commit yet.
- **running** adopts the job's workers that still run (the runner finds them), reads the
  results already in the meta commit, and starts what is left: a shard is only started for
  datums without a result, and the worker itself skips datums with a successful one. A shard
  whose worker ended while datums of it have no result was lost; it is started again for
  those datums, a bounded number of times.
- **finishing** checks for failed datums and output collisions, makes the output commit hold
  exactly the recorded outputs (an interrupted attempt may have uploaded files no result
  names), finishes the meta and output commits, and records success.

Each state change and the event announcing it are written in one transaction (the outbox).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from pydantic import ValidationError

from tusk.client import CommitInfo, CommitRef, RepoClient
from tusk.db import Database
from tusk.errors import Conflict, NotFound, TuskError, Unavailable
from tusk.events.envelope import EventData
from tusk.events.outbox import OutboxWriter
from tusk.events.types import DatumCounts, JobFailed, JobProgress, JobStarted, JobSucceeded
from tusk.pipelines import Datum, PipelineSpec, find_output_collisions
from tusk.pipelines.units import format_duration
from tusk.worker.protocol import META_BRANCH, ShardSpec, shard_path
from tusk_scheduler import store
from tusk_scheduler.config import SchedulerSettings
from tusk_scheduler.domain.counts import counts_from_states
from tusk_scheduler.domain.credentials import WorkerCredentials
from tusk_scheduler.domain.planning import (
    JobPlan,
    datum_spec,
    describe_inputs,
    job_datums,
    make_plan,
    shard_spec,
)
from tusk_scheduler.domain.results import Collected, ResultReader
from tusk_scheduler.metrics import Metrics
from tusk_scheduler.runners.base import Runner, ShardHandle, ShardLaunch, ShardStatus
from tusk_scheduler.tables import (
    ACTIVE_STATES,
    CREATED,
    DATUM_SUCCESS,
    FAILED,
    FAILURE,
    FINAL_STATES,
    FINISHING,
    KILLED,
    PENDING,
    RECOVERED,
    RUNNING,
    SHARD_DONE,
    SHARD_PENDING,
    SHARD_STARTED,
    SKIPPED,
    STARTING,
    SUCCESS,
    JobRow,
    ShardRow,
)

log = structlog.get_logger()

# Worth waiting out: the repo service or the database did not answer.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (Unavailable, OSError, TimeoutError)
MIN_BACKOFF, MAX_BACKOFF = 0.5, 30.0
LINK_BATCH = 10_000  # carried-forward files per link request
MAX_NAMED = 5  # failed datums or collisions spelled out in a job's reason


class JobFailure(Exception):
    """The job cannot succeed; ``reason`` says why, for users."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Stop(Exception):
    """The scheduler is shutting down: leave the job where it is (workers keep running)."""


class _Cancel(Exception):
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


class JobExecution:
    def __init__(self, deps: Deps, job: str, stopping: asyncio.Event) -> None:
        self.deps = deps
        self.job = job
        self.stopping = stopping
        self._poked = asyncio.Event()
        # The plan of a start this execution has just recorded: its skipped datums are still
        # to be recorded and their outputs linked; and its shard specs, for a runner that hands
        # them to the workers (and then they are still to be written to the meta commit).
        self._carry: JobPlan | None = None
        self._fresh_specs: dict[int, ShardSpec] = {}
        # The results batch files of the meta commit already read: they never change.
        self._seen_results: set[str] = set()
        self._credentials = WorkerCredentials(deps.repos, enabled=deps.settings.token is not None)
        self.log = log.bind(job=job)

    def poke(self) -> None:
        """Look at the job's row again soon (e.g. a cancel request arrived)."""
        self._poked.set()

    async def run(self) -> None:
        """Drive the job to a final state; return early only when the scheduler stops."""
        backoff = MIN_BACKOFF
        failure: str | None = None
        with structlog.contextvars.bound_contextvars(job=self.job):
            while not self.stopping.is_set():
                try:
                    job = await self._load()
                    if job.state in FINAL_STATES:
                        return
                    if failure is not None:
                        await self._fail(job, failure)
                    elif job.cancel_reason is not None and job.state != FINISHING:
                        # (Finishing is short, and may have finished the output commit.)
                        await self._fail(job, f"killed: {job.cancel_reason}", killed=True)
                    else:
                        await self._step(job)
                    backoff = MIN_BACKOFF
                    continue
                except _Stop:
                    return
                except _Cancel:
                    continue  # the next turn sees the cancel request on the row
                except JobFailure as e:
                    if failure is None:
                        failure = e.reason
                        continue
                    self.log.error("failing the job failed", error=e.reason)
                except TRANSIENT_ERRORS as e:
                    self.log.warning("job step failed; retrying", error=str(e), retry_in=backoff)
                except TuskError as e:  # permanent: a repo or commit gone, a request refused
                    if failure is None:
                        failure = e.message
                        continue
                    self.log.error("failing the job failed", error=e.message)
                except Exception as e:
                    self.log.exception("job step failed unexpectedly")
                    if failure is None:
                        failure = f"scheduler error: {e!r} (see the scheduler's log)"
                        continue
                await self._sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)

    async def _step(self, job: JobRow) -> None:
        if job.state == CREATED:
            async with self.deps.db.session() as session:
                if await store.update_job(session, job.id, expect=[CREATED], state=STARTING):
                    job.state = STARTING  # and on, without reading the row again
        if job.state == STARTING:
            await self._start(job)  # once recorded, ``job`` says running: straight on
        if job.state == RUNNING:
            await self._run(job)
        elif job.state == FINISHING:
            await self._finish(job)

    # --- starting ---------------------------------------------------------------------------

    async def _start(self, job: JobRow) -> None:
        deps = self.deps
        spec = _spec(job)
        repo = job.output_repo

        async def open_output() -> str:
            commit, started = await self._open(job, job.output_branch, "output", job.output_commit)
            if not started:  # adopted: it may hold what an earlier run (or version) put there
                with contextlib.suppress(NotFound):  # NotFound: nothing to remove
                    await deps.repos.delete_file(repo, commit, "/")
            return commit

        async def open_meta() -> str:
            commit, _ = await self._open(job, META_BRANCH, "meta", job.meta_commit)
            return commit

        # Independent of each other: opening the output commit (empty: the output is exactly
        # the carried-forward outputs plus the new datums'), opening the meta commit, planning.
        output_commit, meta_commit, plan = await _together(
            open_output(), open_meta(), self._plan(job, spec)
        )
        job.output_commit, job.meta_commit = output_commit, meta_commit  # recorded with the start
        self._check_stop()
        specs = [
            shard_spec(
                spec,
                job=job.id,
                shard=n,
                output_repo=repo,
                output_commit=output_commit,
                meta_commit=meta_commit,
                datums=[datum_spec(d) for d in shard],
                log_tail_bytes=deps.settings.log_tail_bytes,
            )
            for n, shard in enumerate(plan.shards)
        ]
        if not deps.runner.takes_spec:  # the workers read them from the meta commit
            await self._put_specs(job, specs)
        if await self._record_start(job, plan):
            self._carry = plan  # recorded and linked as soon as the workers are started
            self._fresh_specs = {s.shard: s for s in specs}

    async def _open(
        self, job: JobRow, branch: str, kind: str, opened: str | None, *, clear: bool = True
    ) -> tuple[str, bool]:
        """Open the job's output or meta commit, or adopt the one a crashed run opened
        (``opened``: the one recorded already); the caller records it. The commit, and whether
        this call started it (an output commit started here starts empty).

        A commit that an ended job left open on the branch (a start cancelled while its
        request was under way) is abandoned first (``clear``); one that is not a job's stops
        the job."""
        if opened is not None:
            return opened, False
        deps = self.deps
        description = _description(job, kind)
        provenance = (
            {
                (i["repo"], i["commit"]): CommitRef(repo=i["repo"], commit=i["commit"])
                for i in job.inputs
            }.values()
            if kind == "output"
            else ()
        )
        try:
            info = await deps.repos.start_commit(
                job.output_repo,
                branch,
                description=description,
                provenance=provenance,
                global_id=job.global_id,
                empty=kind == "output",
                # The job's own repo takes commits only from its pipeline.
                pipeline=job.pipeline,
            )
            commit, started = info.id, True
        except Conflict as e:
            open_commit = e.details.get("open_commit")
            if not isinstance(open_commit, str):
                raise
            found = await deps.repos.inspect_commit(job.output_repo, open_commit)
            if found.description != description and clear and await self._of_ended_job(found):
                self.log.warning(
                    "abandoning a commit an ended job left open",
                    repo=job.output_repo,
                    commit=open_commit,
                    description=found.description,
                )
                with contextlib.suppress(NotFound):
                    await deps.repos.abandon_commit(job.output_repo, open_commit)
                return await self._open(job, branch, kind, None, clear=False)
            if found.description != description:
                raise JobFailure(
                    f"branch {branch!r} of the output repo {job.output_repo!r} has an open commit "
                    f"{open_commit} that is not this job's; finish or abandon it, then run the "
                    "job again"
                ) from None
            commit, started = open_commit, False
        except NotFound as e:
            raise JobFailure(f"cannot open the {kind} commit: {e.message}") from None
        self.log.info(f"{kind} commit opened", repo=job.output_repo, branch=branch, commit=commit)
        return commit, started

    async def _of_ended_job(self, commit: CommitInfo) -> bool:
        """Whether ``commit`` is an output or meta commit of a job that has ended."""
        match = _DESCRIPTION.fullmatch(commit.description)
        if match is None:
            return False
        async with self.deps.db.session(write=False) as session:
            try:
                other = await store.get_job(session, match["job"])
            except NotFound:
                return False
        return other.state in FINAL_STATES

    async def _record_start(self, job: JobRow, plan: JobPlan) -> bool:
        """``running``, with the new datums and the shards (the skipped datums follow once the
        workers are started: with thousands of them, writing their rows takes a while)."""
        output_commit = job.output_commit
        assert output_commit is not None
        now = datetime.now(UTC)
        datum_rows = [
            _datum_row(job.id, d, state=PENDING, shard=n)
            for n, shard in enumerate(plan.shards)
            for d in shard
        ]
        shard_rows = [
            {"job": job.id, "shard": n, "attempt": 0, "state": SHARD_PENDING}
            for n in range(len(plan.shards))
        ]
        counts = DatumCounts(total=len(plan.datums), skipped=len(plan.plan.skipped))
        async with self.deps.db.session() as session:
            if not await store.update_job(
                session,
                job.id,
                expect=[STARTING],
                state=RUNNING,
                started_at=now,
                counts=counts.model_dump(),
                output_commit=output_commit,
                meta_commit=job.meta_commit,
            ):
                return False  # not starting any more: the next turn sees why
            # What the row says now, so that running goes on without reading it again.
            job.state, job.started_at, job.counts = RUNNING, now, counts.model_dump()
            await store.insert_datums(session, datum_rows)
            await store.insert_shards(session, shard_rows)
            await self.deps.outbox.add(
                session,
                JobStarted(
                    job=job.id,
                    pipeline=job.pipeline,
                    output_commit=output_commit,
                    counts=counts,
                    started_at=now,
                ),
            )
        self.log.info(
            "job started",
            datums=len(plan.datums),
            skipped=len(plan.plan.skipped),
            shards=len(plan.shards),
            output_commit=output_commit,
        )
        return True

    # --- running ----------------------------------------------------------------------------

    async def _run(self, job: JobRow) -> None:
        deps = self.deps
        spec = _spec(job)
        assert job.output_commit is not None
        assert job.meta_commit is not None
        carry, self._carry = self._carry, None
        fresh, self._fresh_specs = self._fresh_specs, {}
        if fresh:  # just recorded by this execution: every shard pending, every datum too
            shards = {
                n: ShardRow(job=job.id, shard=n, attempt=0, state=SHARD_PENDING) for n in fresh
            }
            unfinished = {d.id: n for n, shard in fresh.items() for d in shard.datums}
        else:
            async with deps.db.session(write=False) as session:
                shards = {s.shard: s for s in await store.shards_of(session, job.id)}
                unfinished = {
                    d.datum: d.shard
                    for d in await store.datums_of(session, job.id, states=[PENDING])
                    if d.shard is not None
                }
        progress = _Progress(DatumCounts.model_validate(job.counts), deps.settings)
        live: dict[int, ShardHandle] = {}
        if carry is None:
            # Resuming (after a restart, or an error): first what finished while nobody
            # watched, then who is still at work. A job this execution just started has
            # neither, and its workers start sooner for not looking.
            await self._ensure_carried(job, spec)
            await self._collect(job, unfinished, progress)
            live = {h.shard: h for h in await deps.runner.find_running(job.id)}
        handles: dict[int, ShardHandle] = {}
        for n, row in shards.items():
            if row.state == SHARD_DONE:
                continue
            if n in live:
                handles[n] = live[n]
                if (row.handle, row.attempt) != (live[n].ref, live[n].attempt):
                    await self._shard_started(job, live[n])
                deps.metrics.shards_adopted.inc()
                self.log.info("worker adopted", shard=n, ref=live[n].ref)
            elif row.state == SHARD_STARTED and row.handle is not None:
                handles[n] = ShardHandle(job.id, n, row.attempt, row.handle)  # ended meanwhile
            else:
                handle = await self._start_shard(
                    job, spec, row, row.attempt, unfinished, fresh.get(n)
                )
                if handle is not None:
                    handles[n] = handle
        if carry is not None:
            # Once the workers are under way (a poll interval: they have no results sooner),
            # since recording thousands of skipped datums would compete with their start for the
            # repo and the database. Should this not complete (a crash), a resumed run records
            # the skipped datums again, and finishing links any output missing.
            if handles:
                await self._sleep(deps.settings.poll_interval)
            await asyncio.gather(
                self._record_carried(job, carry),
                self._link(job, job.output_commit, carry.links),
                self._put_specs(job, list(fresh.values()) if deps.runner.takes_spec else []),
            )
        deadline = _deadline(job, spec)
        while handles:
            self._check_stop()
            await self._check_cancel()
            if deadline is not None and time.time() > deadline:
                raise JobFailure(f"the job timed out (job_timeout {_duration(spec)})")
            statuses = {n: await deps.runner.status(h) for n, h in handles.items()}
            # Results after statuses: an ended worker's results are all in by now.
            await self._collect(job, unfinished, progress)
            for n, status in statuses.items():
                if status.running:
                    continue
                remaining = [d for d, s in unfinished.items() if s == n]
                row = shards[n]
                if not remaining:
                    del handles[n]
                    await self._shard_done(job, n, status)
                    continue
                attempt = handles[n].attempt + 1
                output = await deps.runner.output(handles[n], 2000)
                if attempt >= deps.settings.shard_attempts:
                    raise JobFailure(
                        f"shard {n} ({len(remaining)} datums unfinished) was lost {attempt} "
                        f"times; last: {_describe(status)}" + _quoted(output)
                    )
                await deps.runner.cancel(handles[n])  # whatever the lost worker left running
                self.log.warning(
                    "shard lost; starting it again",
                    shard=n,
                    attempt=attempt,
                    unfinished=len(remaining),
                    status=_describe(status),
                )
                handle = await self._start_shard(job, spec, row, attempt, unfinished)
                if handle is None:
                    del handles[n]
                else:
                    handles[n] = handle
            if handles:
                await self._sleep(deps.settings.poll_interval)
        async with deps.db.session() as session:
            counts = counts_from_states(await store.datum_states(session, job.id))
            await store.update_job(
                session, job.id, expect=[RUNNING], state=FINISHING, counts=counts.model_dump()
            )

    async def _start_shard(
        self,
        job: JobRow,
        spec: PipelineSpec,
        row: ShardRow,
        attempt: int,
        unfinished: Mapping[str, int],
        fresh: ShardSpec | None = None,
    ) -> ShardHandle | None:
        """Start (or start again) a shard for its datums that have no result yet. ``fresh``:
        the spec the job's start has just written (no datum has a result yet)."""
        deps = self.deps
        assert job.meta_commit is not None
        assert job.output_commit is not None
        n = row.shard
        left = (
            bool(fresh.datums)
            if fresh is not None
            else await self._respec_for_remaining(job, spec, n, unfinished)
        )
        if not left:
            await self._shard_done(job, n, None)
            return None
        if fresh is None:
            # The attempt is recorded before the worker starts: a worker started just before a
            # crash is then found by find_running under this attempt and adopted. (A fresh
            # shard's row says attempt 0, pending, already.)
            async with deps.db.session() as session:
                await store.update_shard(
                    session,
                    job.id,
                    n,
                    attempt=attempt,
                    state=SHARD_PENDING,
                    handle=None,
                    exit_code=None,
                    detail=None,
                )
        resources = (
            spec.resource_requests.model_dump(exclude_none=True) if spec.resource_requests else {}
        )
        limits = spec.resource_limits.model_dump(exclude_none=True) if spec.resource_limits else {}
        scheduling = spec.scheduling_spec
        token = await self._credentials.issue(job, spec)
        handle = await deps.runner.start(
            ShardLaunch(
                job=job.id,
                pipeline=job.pipeline,
                shard=n,
                attempt=attempt,
                output_repo=job.output_repo,
                meta_commit=job.meta_commit,
                image=spec.transform.image,
                resource_requests=resources,
                resource_limits=limits,
                env=dict(spec.transform.env),
                secrets=spec.transform.secrets,
                node_selector=dict(scheduling.node_selector) if scheduling else {},
                priority_class_name=scheduling.priority_class_name if scheduling else None,
                image_pull_secrets=spec.transform.image_pull_secrets,
                version=job.version,
                spec=fresh.model_dump_json() if fresh is not None else None,
                fresh=fresh is not None,
                token=token,
            )
        )
        deps.metrics.shard_starts.labels(deps.runner.kind, str(attempt > 0).lower()).inc()
        await self._shard_started(job, handle)
        return handle

    async def _respec_for_remaining(
        self,
        job: JobRow,
        spec: PipelineSpec,
        n: int,
        unfinished: Mapping[str, int],
    ) -> bool:
        """Write the shard's spec for its datums without a result (the one the job's start
        wrote may name datums done since, or, for a runner that took it inline, may never have
        been written); False when none is left."""
        assert job.meta_commit is not None
        assert job.output_commit is not None
        async with self.deps.db.session(write=False) as session:
            datums = await store.datums_of(session, job.id, shard=n)
        remaining = [d for d in datums if d.datum in unfinished]
        if not remaining:
            return False
        # Only what is left: the worker would run a datum with a failed result again.
        respec = shard_spec(
            spec,
            job=job.id,
            shard=n,
            output_repo=job.output_repo,
            output_commit=job.output_commit,
            meta_commit=job.meta_commit,
            datums=[
                datum_spec(Datum.from_dict({"id": d.datum, "inputs": d.inputs})) for d in remaining
            ],
            log_tail_bytes=self.deps.settings.log_tail_bytes,
        )
        await self._put_specs(job, [respec])
        return True

    async def _put_specs(self, job: JobRow, specs: Sequence[ShardSpec]) -> None:
        """Write shard specs to the job's meta commit, where workers and people read them."""
        assert job.meta_commit is not None
        if specs:
            await self.deps.repos.put_files(
                job.output_repo,
                job.meta_commit,
                [(shard_path(job.id, s.shard), s.model_dump_json().encode()) for s in specs],
            )

    async def _shard_started(self, job: JobRow, handle: ShardHandle) -> None:
        async with self.deps.db.session() as session:
            await store.update_shard(
                session,
                job.id,
                handle.shard,
                attempt=handle.attempt,
                state=SHARD_STARTED,
                handle=handle.ref,
                started_at=datetime.now(UTC),
            )

    async def _shard_done(self, job: JobRow, shard: int, status: ShardStatus | None) -> None:
        async with self.deps.db.session() as session:
            await store.update_shard(
                session,
                job.id,
                shard,
                state=SHARD_DONE,
                exit_code=status.exit_code if status else None,
                detail=_describe(status) if status else "nothing left to run",
                finished_at=datetime.now(UTC),
            )

    async def _record_carried(self, job: JobRow, plan: JobPlan) -> None:
        """The rows of the skipped datums (rows already there after a crash are kept)."""
        rows = [
            _datum_row(job.id, d, state=SKIPPED, outputs=plan.carried[d.id])
            for d in plan.plan.skipped
        ]
        async with self.deps.db.session() as session:
            await store.insert_datums(session, rows, skip_existing=True)
        self.deps.metrics.datums.labels(SKIPPED).inc(len(rows))

    async def _ensure_carried(self, job: JobRow, spec: PipelineSpec) -> None:
        """After a crash between recording the start and recording the skipped datums: plan
        the job again (same commits, same processed datums: the same plan) and record them.

        It compares with the counts recorded with the start, so it must run before anything
        recomputes the counts from the rows.
        """
        expected = DatumCounts.model_validate(job.counts).skipped
        async with self.deps.db.session(write=False) as session:
            recorded = (await store.datum_states(session, job.id)).get(SKIPPED, 0)
        if recorded >= expected:
            return
        self.log.info("recording the skipped datums again", expected=expected, found=recorded)
        await self._record_carried(job, await self._plan(job, spec))

    async def _plan(self, job: JobRow, spec: PipelineSpec) -> JobPlan:
        commits = {i["name"]: i["commit"] for i in job.inputs}
        datums = await job_datums(spec, commits, self.deps.repos)
        async with self.deps.db.session(write=False) as session:
            processed = await store.processed_outputs(
                session, job.pipeline, spec.datum_identity(), [d.id for d in datums]
            )
        return make_plan(spec, datums, processed, max_shards=self.deps.runner.max_shards)

    async def _link(self, job: JobRow, commit: str, links: Sequence[tuple[str, str]]) -> None:
        for start in range(0, len(links), LINK_BATCH):
            await self.deps.repos.link_files(
                job.output_repo, commit, list(links[start : start + LINK_BATCH])
            )

    async def _collect(self, job: JobRow, unfinished: dict[str, int], progress: _Progress) -> None:
        """Record the results that appeared in the meta commit; maybe emit job.progress."""
        deps = self.deps
        assert job.meta_commit is not None
        # Marked read only once their results are recorded: after a failed write, read again.
        seen = set(self._seen_results)
        found = await deps.results.collect(
            job.output_repo, job.meta_commit, job.id, unfinished, seen
        )
        if not found and not progress.due(progress.counts):
            self._seen_results = seen
            return
        async with deps.db.session() as session:
            if found:
                await store.record_results(session, [_result_values(job.id, c) for c in found])
            counts = counts_from_states(await store.datum_states(session, job.id))
            await store.update_job(session, job.id, counts=counts.model_dump())
            if progress.due(counts):
                await deps.outbox.add(
                    session, JobProgress(job=job.id, pipeline=job.pipeline, counts=counts)
                )
                progress.sent(counts)
        self._seen_results = seen
        for c in found:
            unfinished.pop(c.result.datum, None)
            deps.metrics.datums.labels(c.result.state).inc()
        progress.counts = counts

    # --- finishing --------------------------------------------------------------------------

    async def _finish(self, job: JobRow) -> None:
        deps = self.deps
        assert job.output_commit is not None
        assert job.meta_commit is not None
        async with deps.db.session(write=False) as session:
            datums = await store.datums_of(session, job.id)
        problems = _failed_datums(datums) + _collisions(datums)
        if problems:
            raise JobFailure("; ".join(problems))
        repo = job.output_repo
        commit = await deps.repos.inspect_commit(repo, job.output_commit)
        if commit.state == "open":
            await self._reconcile_outputs(job, datums)
            await self._finish_commit(repo, job.meta_commit)
            await self._finish_commit(repo, job.output_commit)
        warning = None if datums else await self._why_no_datums(job)
        counts = await self._end(
            job,
            datums,
            state=SUCCESS,
            expect=[FINISHING],
            reason=warning,
            event=lambda counts, now: JobSucceeded(
                job=job.id,
                pipeline=job.pipeline,
                output_commit=job.output_commit,
                counts=counts,
                finished_at=now,
                warning=warning,
            ),
        )
        if counts is not None and warning is not None:
            self.log.warning("job succeeded without datums", reason=warning)
        elif counts is not None:
            self.log.info("job succeeded", output_commit=job.output_commit, **counts.model_dump())
            await deps.runner.cleanup(job.id)
            await self._credentials.revoke(job.id)

    async def _why_no_datums(self, job: JobRow) -> str:
        """A warning naming the globs that matched nothing, for a job that had no datums."""
        commits = {i["name"]: i["commit"] for i in job.inputs}
        empty = []
        for pfs in _spec(job).resolved_input().pfs_inputs():
            commit = commits.get(pfs.name)
            if commit is None:
                empty.append(f"input {pfs.name} has no commit yet")
                continue
            try:
                matched = await self.deps.repos.glob(pfs.repo, commit, pfs.glob)
            except TuskError as e:  # only a warning: say what is known
                empty.append(f"input {pfs.name}: {e.message}")
                continue
            if not matched:
                empty.append(f"glob {pfs.glob!r} of input {pfs.name} matched nothing in "
                              f"{pfs.repo}@{commit}")
        return "no datums: " + ("; ".join(empty) or "the inputs' combination is empty")

    async def _reconcile_outputs(self, job: JobRow, datums: Sequence[Any]) -> None:
        """Make the output commit hold exactly the recorded outputs: an attempt interrupted
        mid-upload may have left files that no result names."""
        repos, repo, commit = self.deps.repos, job.output_repo, job.output_commit
        assert commit is not None
        expected = {
            o["path"]: o["hash"]
            for d in datums
            if d.state in (DATUM_SUCCESS, RECOVERED, SKIPPED)
            for o in d.outputs
        }
        actual = {f.path: f.hash for f in await repos.glob(repo, commit, "/**") if f.type == "file"}
        for path in sorted(set(actual) - set(expected)):
            self.log.info("removing an output no datum result names", path=path)
            with contextlib.suppress(NotFound):
                await repos.delete_file(repo, commit, path)
        await self._link(job, commit, [(p, h) for p, h in expected.items() if actual.get(p) != h])

    async def _finish_commit(self, repo: str, commit: str, error: str | None = None) -> None:
        """Finish a commit unless it is finished already (a crash after finishing it)."""
        try:
            await self.deps.repos.finish_commit(repo, commit, error=error)
        except Conflict:
            info = await self.deps.repos.inspect_commit(repo, commit)
            if info.state != "finished":
                raise

    # --- failing ----------------------------------------------------------------------------

    async def _fail(self, job: JobRow, reason: str, *, killed: bool = False) -> None:
        """Stop the job's workers, finish its commits (the output commit marked failed) and
        record the failure. Datums that succeeded are remembered for later jobs to skip."""
        deps = self.deps
        for handle in await self._known_handles(job):
            await deps.runner.cancel(handle)
        if job.state == STARTING and job.output_commit is None:
            await self._find_opened(job)
        datums: list[Any] = []
        if job.output_commit is not None and job.meta_commit is not None:
            async with deps.db.session(write=False) as session:
                unfinished = {
                    d.datum: d.shard
                    for d in await store.datums_of(session, job.id, states=[PENDING])
                    if d.shard is not None
                }
            if unfinished and job.state == RUNNING:
                await self._collect(job, unfinished, _Progress(None, deps.settings))
            async with deps.db.session(write=False) as session:
                datums = await store.datums_of(session, job.id)
        for commit, error in ((job.meta_commit, None), (job.output_commit, reason)):
            if commit is not None:
                with contextlib.suppress(NotFound):  # the repo is gone
                    await self._finish_commit(job.output_repo, commit, error)
        state = KILLED if killed else FAILURE
        ended = await self._end(
            job,
            datums,
            state=state,
            expect=ACTIVE_STATES,
            reason=reason,
            event=lambda counts, now: JobFailed(
                job=job.id,
                pipeline=job.pipeline,
                output_commit=job.output_commit,
                reason=reason,
                killed=killed,
                counts=counts,
                finished_at=now,
            ),
        )
        if ended is not None:
            # A failure is what an operator watching the logs must see; a kill was asked for.
            if killed:
                self.log.info("job killed", reason=reason)
            else:
                self.log.warning("job failed", reason=reason)
            await deps.runner.cleanup(job.id)
            await self._credentials.revoke(job.id)

    async def _end(
        self,
        job: JobRow,
        datums: Sequence[Any],
        *,
        state: str,
        expect: Sequence[str],
        event: Callable[[DatumCounts, datetime], EventData],
        reason: str | None = None,
    ) -> DatumCounts | None:
        """Record the job's final state with its event, and its successful datums for later
        jobs to skip; the counts, or None when the job was no longer in an ``expect`` state."""
        now = datetime.now(UTC)
        async with self.deps.db.session() as session:
            counts = counts_from_states(await store.datum_states(session, job.id))
            await store.record_processed(
                session,
                job.pipeline,
                job.version,
                _identity(job),
                job.id,
                {d.datum: d.outputs for d in datums if d.state in (DATUM_SUCCESS, RECOVERED)},
            )
            fields = {"reason": reason} if reason is not None else {}
            if not await store.update_job(
                session,
                job.id,
                expect=expect,
                state=state,
                finished_at=now,
                counts=counts.model_dump(),
                **fields,
            ):
                return None
            await self.deps.outbox.add(session, event(counts, now))
        self._finished(job, state, now)
        return counts

    async def _find_opened(self, job: JobRow) -> None:
        """The commits of a start that failed or crashed before recording them, found by
        their descriptions, so that failing the job finishes them instead of leaving them open
        on the output repo's branches (where they would stop the pipeline's next job)."""
        for branch, kind in ((job.output_branch, "output"), (META_BRANCH, "meta")):
            try:
                page = await self.deps.repos.list_commits_page(
                    job.output_repo, branch=branch, state="open", limit=1
                )
            except NotFound:  # the repo is gone
                return
            found = next(
                (c.id for c in page.items if c.description == _description(job, kind)), None
            )
            if kind == "output":
                job.output_commit = found
            else:
                job.meta_commit = found

    async def _known_handles(self, job: JobRow) -> list[ShardHandle]:
        async with self.deps.db.session(write=False) as session:
            rows = await store.shards_of(session, job.id)
        handles = {
            r.shard: ShardHandle(job.id, r.shard, r.attempt, r.handle)
            for r in rows
            if r.state == SHARD_STARTED and r.handle is not None
        }
        for handle in await self.deps.runner.find_running(job.id):
            handles[handle.shard] = handle
        return list(handles.values())

    # --- helpers ----------------------------------------------------------------------------

    def _finished(self, job: JobRow, state: str, now: datetime) -> None:
        self.deps.metrics.jobs_finished.labels(state).inc()
        if job.started_at is not None:
            self.deps.metrics.job_seconds.observe((now - job.started_at).total_seconds())

    async def _load(self) -> JobRow:
        async with self.deps.db.session(write=False) as session:
            return await store.get_job(session, self.job)

    async def _check_cancel(self) -> None:
        if self._poked.is_set():
            self._poked.clear()
            if (await self._load()).cancel_reason is not None:
                raise _Cancel

    def _check_stop(self) -> None:
        if self.stopping.is_set():
            raise _Stop

    async def _sleep(self, seconds: float) -> None:
        """Sleep, cut short by a poke or by the scheduler stopping."""
        stop = asyncio.ensure_future(self.stopping.wait())
        poke = asyncio.ensure_future(self._poked.wait())
        try:
            await asyncio.wait([stop, poke], timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            poke.cancel()


class _Progress:
    """When the next job.progress event is due: counts changed and the interval passed."""

    def __init__(self, counts: DatumCounts | None, settings: SchedulerSettings) -> None:
        self.counts = counts or DatumCounts()
        self.interval = settings.progress_interval
        self._last_sent = self.counts
        self._sent_at = time.monotonic()

    def due(self, counts: DatumCounts) -> bool:
        return counts != self._last_sent and time.monotonic() - self._sent_at >= self.interval

    def sent(self, counts: DatumCounts) -> None:
        self._last_sent = counts
        self._sent_at = time.monotonic()


async def _together(*steps: Awaitable[Any]) -> list[Any]:
    """Run independent steps at once; the first failure cancels the others and is raised
    (as itself, for the caller's ``except`` clauses)."""
    tasks = [asyncio.ensure_future(step) for step in steps]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _spec(job: JobRow) -> PipelineSpec:
    try:
        return PipelineSpec.model_validate(job.spec)
    except ValidationError as e:
        raise JobFailure(f"the job's pipeline spec is not valid: {e}") from None


def _identity(job: JobRow) -> str:
    return _spec(job).datum_identity()


def _description(job: JobRow, kind: str) -> str:
    """What the job's output or meta commit says it is: how a restarted start knows it."""
    return f"tusk job {job.id} ({kind})"


_DESCRIPTION = re.compile(r"tusk job (?P<job>[0-9a-f]+) \((?:output|meta)\)")


def _duration(spec: PipelineSpec) -> str:
    return format_duration(spec.job_timeout) if spec.job_timeout is not None else "none"


def _deadline(job: JobRow, spec: PipelineSpec) -> float | None:
    if spec.job_timeout is None or job.started_at is None:
        return None
    return job.started_at.timestamp() + spec.job_timeout.total_seconds()


def _datum_row(
    job: str,
    datum: Datum,
    *,
    state: str,
    shard: int | None = None,
    outputs: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "job": job,
        "datum": datum.id,
        "state": state,
        "attempts": 0,
        "shard": shard,
        "inputs": _inputs_json(datum),
        "outputs": outputs or [],
    }


def _inputs_json(datum: Datum) -> list[dict[str, Any]]:
    # By hand: dataclasses.asdict costs 15 µs a datum, a noticeable share of a large job's start.
    return [
        {
            "name": i.name,
            "repo": i.repo,
            "branch": i.branch,
            "commit": i.commit,
            "path": i.path,
            "type": i.type,
            "hash": i.hash,
            "size": i.size,
        }
        for i in datum.inputs
    ]


def _result_values(job: str, collected: Collected) -> dict[str, Any]:
    r = collected.result
    return {
        "job": job,
        "datum": r.datum,
        "state": {"success": DATUM_SUCCESS, "recovered": RECOVERED}.get(r.state, FAILED),
        "attempts": r.attempts,
        "outputs": [o.model_dump() for o in r.outputs],
        "error": r.error,
        "log_tail": collected.log_tail,
        "started_at": r.started_at,
        "finished_at": r.finished_at,
    }


def _failed_datums(datums: Iterable[Any]) -> list[str]:
    failed = [d for d in datums if d.state == FAILED]
    if not failed:
        return []
    named = [
        f"datum {d.datum} ({describe_inputs(d.inputs)}) failed after {d.attempts} "
        f"attempt{'s' if d.attempts != 1 else ''}: {d.error}"
        for d in failed[:MAX_NAMED]
    ]
    more = f" and {len(failed) - MAX_NAMED} more" if len(failed) > MAX_NAMED else ""
    return [
        f"{len(failed)} datum{'s' if len(failed) > 1 else ''} failed: "
        + "; ".join(named)
        + more
        + " (see the datum logs)"
    ]


def _collisions(datums: Iterable[Any]) -> list[str]:
    by_id = {d.datum: d for d in datums if d.state in (DATUM_SUCCESS, RECOVERED, SKIPPED)}
    found = find_output_collisions({i: [o["path"] for o in d.outputs] for i, d in by_id.items()})
    named = [
        f"datums {a} ({describe_inputs(by_id[a].inputs)}) and {b} "
        f"({describe_inputs(by_id[b].inputs)}) both write {path}"
        for path, a, b in found[:MAX_NAMED]
    ]
    more = f" and {len(found) - MAX_NAMED} more" if len(found) > MAX_NAMED else ""
    return ["output collision: " + "; ".join(named) + more] if found else []


def _describe(status: ShardStatus | None) -> str:
    if status is None:
        return ""
    if status.state == "exited" and status.exit_code is None:
        return status.detail or "the worker ended without an exit status"
    if status.state == "exited":
        return f"the worker exited with status {status.exit_code}"
    return status.detail or "the worker was lost"


def _quoted(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()][-5:]
    return f"; the worker's last output: {' | '.join(lines)}" if lines else ""
