"""Running a job: ``running → finishing``.

It adopts the job's workers that still run (the runner finds them), reads the results already
in the meta commit, and starts what is left: a shard is only started for datums without a
result, and the worker itself skips datums with a successful one. Watching the shards, and
starting a lost one again, is :mod:`.shards`'s loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from tusk.events.types import DatumCounts, JobProgress
from tusk.pipelines import Datum, PipelineSpec
from tusk.worker.protocol import ShardSpec
from tusk_scheduler import store
from tusk_scheduler.domain.counts import counts_from_states
from tusk_scheduler.domain.job import (
    JobFailure,
    JobView,
    Progress,
    Scope,
    deadline,
    duration,
    spec_of,
)
from tusk_scheduler.domain.planning import datum_spec, shard_spec
from tusk_scheduler.domain.results import Collected
from tusk_scheduler.domain.shards import ShardCalls, describe, resume_shards, watch_shards
from tusk_scheduler.domain.starting import Started, link, plan_job, put_specs, record_carried
from tusk_scheduler.runners.base import ShardHandle, ShardLaunch, ShardStatus
from tusk_scheduler.tables import (
    DATUM_SUCCESS,
    FAILED,
    FINISHING,
    PENDING,
    RECOVERED,
    RUNNING,
    SHARD_DONE,
    SHARD_PENDING,
    SHARD_STARTED,
    SKIPPED,
    ShardRow,
)


async def run(x: Scope, job: JobView, started: Started | None) -> None:
    """Drive the job's shards to their end and record ``finishing``. ``started``: the start
    this execution has just recorded (None: resuming, after a restart or an error)."""
    deps = x.deps
    spec = spec_of(job)
    output_commit, _ = job.commits()
    fresh = started.specs if started is not None else {}
    if fresh:  # just recorded by this execution: every shard pending, every datum too
        shards = {n: ShardRow(job=job.id, shard=n, attempt=0, state=SHARD_PENDING) for n in fresh}
        unfinished = {d.id: n for n, shard in fresh.items() for d in shard.datums}
    else:
        async with deps.db.session(write=False) as session:
            shards = {s.shard: s for s in await store.shards_of(session, job.id)}
            unfinished = {
                d.datum: d.shard
                for d in await store.datums_of(session, job.id, states=[PENDING])
                if d.shard is not None
            }
    progress = Progress(DatumCounts.model_validate(job.counts), deps.settings.progress_interval)
    live: dict[int, ShardHandle] = {}
    if started is None:
        # First what finished while nobody watched, then who is still at work. A job this
        # execution just started has neither, and its workers start sooner for not looking.
        await _ensure_carried(x, job, spec)
        await collect(x, job, unfinished, progress)
        live = {h.shard: h for h in await deps.runner.find_running(job.id)}
    resumed = resume_shards(job.id, shards, live)
    for n, handle in resumed.adopted.items():
        if n in resumed.to_record:
            await _shard_started(x, job, handle)
        deps.metrics.shards_adopted.inc()
        x.log.info("worker adopted", shard=n, ref=handle.ref)
    handles = {**resumed.adopted, **resumed.ended}
    for n in resumed.to_start:
        new = await _start_shard(x, job, spec, n, shards[n].attempt, unfinished, fresh.get(n))
        if new is not None:
            handles[n] = new
    if started is not None:
        # Once the workers are under way (a poll interval: they have no results sooner),
        # since recording thousands of skipped datums would compete with their start for the
        # repo and the database. Should this not complete (a crash), a resumed run records
        # the skipped datums again, and finishing links any output missing.
        if handles:
            await x.sleep(deps.settings.poll_interval)
        await asyncio.gather(
            record_carried(x, job, started.plan),
            link(x, job, output_commit, started.plan.links),
            put_specs(x, job, list(fresh.values()) if deps.runner.takes_spec else []),
        )
    ends_at = deadline(job, spec)

    async def check() -> None:
        x.check_stop()
        await x.check_cancel()
        if ends_at is not None and time.time() > ends_at:
            raise JobFailure(f"the job timed out (job_timeout {duration(spec)})")

    async def restart(n: int, attempt: int) -> ShardHandle | None:
        return await _start_shard(x, job, spec, n, attempt, unfinished)

    async def done(n: int, status: ShardStatus) -> None:
        await _shard_done(x, job, n, status)

    async def collect_now() -> None:
        await collect(x, job, unfinished, progress)

    await watch_shards(
        deps.runner,
        handles,
        unfinished,
        ShardCalls(check=check, collect=collect_now, restart=restart, done=done, sleep=x.sleep),
        attempts=deps.settings.shard_attempts,
        poll_interval=deps.settings.poll_interval,
    )
    async with deps.db.session() as session:
        counts = counts_from_states(await store.datum_states(session, job.id))
        await store.update_job(
            session, job.id, expect=[RUNNING], state=FINISHING, counts=counts.model_dump()
        )


def pipeline_launch(spec: PipelineSpec, pipeline: str, output_repo: str) -> ShardLaunch:
    """A launch with what every shard of the pipeline has in common (what its pods are made
    of); the job's part left blank."""
    resources = (
        spec.resource_requests.model_dump(exclude_none=True) if spec.resource_requests else {}
    )
    limits = spec.resource_limits.model_dump(exclude_none=True) if spec.resource_limits else {}
    scheduling = spec.scheduling_spec
    return ShardLaunch(
        job="",
        pipeline=pipeline,
        shard=0,
        attempt=0,
        output_repo=output_repo,
        meta_commit="",
        image=spec.transform.image,
        resource_requests=resources,
        resource_limits=limits,
        env=dict(spec.transform.env),
        secrets=spec.transform.secrets,
        node_selector=dict(scheduling.node_selector) if scheduling else {},
        priority_class_name=scheduling.priority_class_name if scheduling else None,
        image_pull_secrets=spec.transform.image_pull_secrets,
        keep_warm=not spec.autoscaling,
    )


async def _start_shard(
    x: Scope,
    job: JobView,
    spec: PipelineSpec,
    n: int,
    attempt: int,
    unfinished: Mapping[str, int],
    fresh: ShardSpec | None = None,
) -> ShardHandle | None:
    """Start (or start again) a shard for its datums that have no result yet. ``fresh``:
    the spec the job's start has just written (no datum has a result yet)."""
    deps = x.deps
    _, meta_commit = job.commits()
    left = (
        bool(fresh.datums)
        if fresh is not None
        else await _respec_for_remaining(x, job, spec, n, unfinished)
    )
    if not left:
        await _shard_done(x, job, n, None)
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
    token = await x.credentials.issue(job, spec)
    handle = await deps.runner.start(
        replace(
            pipeline_launch(spec, job.pipeline, job.output_repo),
            job=job.id,
            shard=n,
            attempt=attempt,
            meta_commit=meta_commit,
            version=job.version,
            spec=fresh.model_dump_json() if fresh is not None else None,
            fresh=fresh is not None,
            token=token,
        )
    )
    deps.metrics.shard_starts.labels(deps.runner.kind, str(attempt > 0).lower()).inc()
    await _shard_started(x, job, handle)
    return handle


async def _respec_for_remaining(
    x: Scope, job: JobView, spec: PipelineSpec, n: int, unfinished: Mapping[str, int]
) -> bool:
    """Write the shard's spec for its datums without a result (the one the job's start
    wrote may name datums done since, or, for a runner that took it inline, may never have
    been written); False when none is left."""
    output_commit, meta_commit = job.commits()
    async with x.deps.db.session(write=False) as session:
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
        output_commit=output_commit,
        meta_commit=meta_commit,
        datums=[
            datum_spec(Datum.from_dict({"id": d.datum, "inputs": d.inputs})) for d in remaining
        ],
        log_tail_bytes=x.deps.settings.log_tail_bytes,
    )
    await put_specs(x, job, [respec])
    return True


async def _shard_started(x: Scope, job: JobView, handle: ShardHandle) -> None:
    async with x.deps.db.session() as session:
        await store.update_shard(
            session,
            job.id,
            handle.shard,
            attempt=handle.attempt,
            state=SHARD_STARTED,
            handle=handle.ref,
            started_at=datetime.now(UTC),
        )


async def _shard_done(x: Scope, job: JobView, shard: int, status: ShardStatus | None) -> None:
    async with x.deps.db.session() as session:
        await store.update_shard(
            session,
            job.id,
            shard,
            state=SHARD_DONE,
            exit_code=status.exit_code if status else None,
            detail=describe(status) if status else "nothing left to run",
            finished_at=datetime.now(UTC),
        )


async def _ensure_carried(x: Scope, job: JobView, spec: PipelineSpec) -> None:
    """After a crash between recording the start and recording the skipped datums: plan
    the job again (same commits, same processed datums: the same plan) and record them.

    It compares with the counts recorded with the start, so it must run before anything
    recomputes the counts from the rows.
    """
    expected = DatumCounts.model_validate(job.counts).skipped
    async with x.deps.db.session(write=False) as session:
        recorded = (await store.datum_states(session, job.id)).get(SKIPPED, 0)
    if recorded >= expected:
        return
    x.log.info("recording the skipped datums again", expected=expected, found=recorded)
    await record_carried(x, job, await plan_job(x, job, spec))


async def collect(x: Scope, job: JobView, unfinished: dict[str, int], progress: Progress) -> None:
    """Record the results that appeared in the meta commit (and drop their datums from
    ``unfinished``); maybe emit job.progress."""
    deps = x.deps
    _, meta_commit = job.commits()
    # Marked read only once their results are recorded: after a failed write, read again.
    seen = set(x.seen_results)
    found = await deps.results.collect(job.output_repo, meta_commit, job.id, unfinished, seen)
    if not found and not progress.due(progress.counts):
        x.seen_results = seen
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
    x.seen_results = seen
    for c in found:
        unfinished.pop(c.result.datum, None)
        deps.metrics.datums.labels(c.result.state).inc()
    progress.counts = counts


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
