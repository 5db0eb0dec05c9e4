"""Ending a job: ``finishing → success``, or from any unfinished state ``→ failure | killed``.

Finishing checks for failed datums and output collisions, makes the output commit hold exactly
the recorded outputs (an interrupted attempt may have uploaded files no result names),
finishes the meta and output commits, copies the output commit to the pipeline's egress target
(if it has one), and records success. Failing stops the job's workers,
finishes its commits (the output commit marked failed) and records the failure. Either way the
datums that succeeded are remembered for later jobs to skip, and the final state and its event
are written in one transaction (the outbox).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from tusk.errors import Conflict, NotFound, TuskError
from tusk.events.envelope import EventData
from tusk.events.types import DatumCounts, JobFailed, JobSucceeded
from tusk.pipelines import find_output_collisions
from tusk.worker.protocol import META_BRANCH
from tusk_scheduler import store
from tusk_scheduler.domain.counts import counts_from_states
from tusk_scheduler.domain.egress import egress
from tusk_scheduler.domain.job import (
    MAX_NAMED,
    JobFailure,
    JobView,
    Progress,
    Scope,
    description,
    identity,
    spec_of,
)
from tusk_scheduler.domain.planning import describe_inputs
from tusk_scheduler.domain.running import collect
from tusk_scheduler.domain.starting import link
from tusk_scheduler.runners.base import ShardHandle
from tusk_scheduler.tables import (
    ACTIVE_STATES,
    DATUM_SUCCESS,
    FAILED,
    FAILURE,
    FINISHING,
    KILLED,
    PENDING,
    RECOVERED,
    RUNNING,
    SHARD_STARTED,
    SKIPPED,
    STARTING,
    SUCCESS,
)


async def finish(x: Scope, job: JobView) -> None:
    deps = x.deps
    output_commit, meta_commit = job.commits()
    async with deps.db.session(write=False) as session:
        datums = await store.datums_of(session, job.id)
    problems = failed_datums(datums) + collisions(datums)
    if problems:
        raise JobFailure("; ".join(problems))
    repo = job.output_repo
    commit = await deps.repos.inspect_commit(repo, output_commit)
    if commit.state == "open":
        await _reconcile_outputs(x, job, datums)
        await _finish_commit(x, repo, meta_commit)
        await _finish_commit(x, repo, output_commit)
    await egress(x, job, output_commit)
    warning = None if datums else await _why_no_datums(x, job)
    counts = await _end(
        x,
        job,
        datums,
        state=SUCCESS,
        expect=[FINISHING],
        reason=warning,
        event=lambda counts, now: JobSucceeded(
            job=job.id,
            pipeline=job.pipeline,
            output_commit=output_commit,
            counts=counts,
            finished_at=now,
            warning=warning,
        ),
    )
    if counts is not None and warning is not None:
        x.log.warning("job succeeded without datums", reason=warning)
    elif counts is not None:
        x.log.info("job succeeded", output_commit=output_commit, **counts.model_dump())
        await deps.runner.cleanup(job.id)
        await x.credentials.revoke(job.id)


async def _why_no_datums(x: Scope, job: JobView) -> str:
    """A warning naming the globs that matched nothing, for a job that had no datums."""
    commits = {i["name"]: i["commit"] for i in job.inputs}
    empty = []
    for pfs in spec_of(job).resolved_input().pfs_inputs():
        commit = commits.get(pfs.key)
        if commit is None:
            empty.append(f"input {pfs.name} has no commit yet")
            continue
        try:
            matched = await x.deps.repos.glob(pfs.repo, commit, pfs.glob)
        except TuskError as e:  # only a warning: say what is known
            empty.append(f"input {pfs.name}: {e.message}")
            continue
        if not matched:
            empty.append(
                f"glob {pfs.glob!r} of input {pfs.name} matched nothing in {pfs.repo}@{commit}"
            )
    return "no datums: " + ("; ".join(empty) or "the inputs' combination is empty")


async def _reconcile_outputs(x: Scope, job: JobView, datums: Sequence[Any]) -> None:
    """Make the output commit hold exactly the recorded outputs: an attempt interrupted
    mid-upload may have left files that no result names."""
    repos, repo = x.deps.repos, job.output_repo
    commit, _ = job.commits()
    expected = {
        o["path"]: o["hash"]
        for d in datums
        if d.state in (DATUM_SUCCESS, RECOVERED, SKIPPED)
        for o in d.outputs
    }
    actual = {f.path: f.hash for f in await repos.glob(repo, commit, "/**") if f.type == "file"}
    for path in sorted(set(actual) - set(expected)):
        x.log.info("removing an output no datum result names", path=path)
        with contextlib.suppress(NotFound):
            await repos.delete_file(repo, commit, path)
    await link(x, job, commit, [(p, h) for p, h in expected.items() if actual.get(p) != h])


async def _finish_commit(x: Scope, repo: str, commit: str, error: str | None = None) -> None:
    """Finish a commit unless it is finished already (a crash after finishing it)."""
    try:
        await x.deps.repos.finish_commit(repo, commit, error=error)
    except Conflict:
        info = await x.deps.repos.inspect_commit(repo, commit)
        if info.state != "finished":
            raise


async def fail(x: Scope, job: JobView, reason: str, *, killed: bool = False) -> None:
    """Stop the job's workers, finish its commits (the output commit marked failed) and
    record the failure. Datums that succeeded are remembered for later jobs to skip."""
    deps = x.deps
    for handle in await _known_handles(x, job):
        await deps.runner.cancel(handle)
    if job.state == STARTING and job.output_commit is None:
        job = await _find_opened(x, job)
    datums: list[Any] = []
    if job.output_commit is not None and job.meta_commit is not None:
        async with deps.db.session(write=False) as session:
            unfinished = {
                d.datum: d.shard
                for d in await store.datums_of(session, job.id, states=[PENDING])
                if d.shard is not None
            }
        if unfinished and job.state == RUNNING:
            await collect(x, job, unfinished, Progress(None, deps.settings.progress_interval))
        async with deps.db.session(write=False) as session:
            datums = await store.datums_of(session, job.id)
    for commit, error in ((job.meta_commit, None), (job.output_commit, reason)):
        if commit is not None:
            with contextlib.suppress(NotFound):  # the repo is gone
                await _finish_commit(x, job.output_repo, commit, error)
    state = KILLED if killed else FAILURE
    output_commit = job.output_commit
    ended = await _end(
        x,
        job,
        datums,
        state=state,
        expect=ACTIVE_STATES,
        reason=reason,
        event=lambda counts, now: JobFailed(
            job=job.id,
            pipeline=job.pipeline,
            output_commit=output_commit,
            reason=reason,
            killed=killed,
            counts=counts,
            finished_at=now,
        ),
    )
    if ended is not None:
        # A failure is what an operator watching the logs must see; a kill was asked for.
        if killed:
            x.log.info("job killed", reason=reason)
        else:
            x.log.warning("job failed", reason=reason)
        await deps.runner.cleanup(job.id)
        await x.credentials.revoke(job.id)


async def _end(
    x: Scope,
    job: JobView,
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
    async with x.deps.db.session() as session:
        counts = counts_from_states(await store.datum_states(session, job.id))
        await store.record_processed(
            session,
            job.pipeline,
            job.version,
            identity(job),
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
        await x.deps.outbox.add(session, event(counts, now))
    x.finished(job, state, now)
    return counts


async def _find_opened(x: Scope, job: JobView) -> JobView:
    """The job with the commits of a start that failed or crashed before recording them,
    found by their descriptions, so that failing the job finishes them instead of leaving them
    open on the output repo's branches (where they would stop the pipeline's next job)."""
    found: dict[str, str | None] = {}
    for branch, kind in ((job.output_branch, "output"), (META_BRANCH, "meta")):
        try:
            page = await x.deps.repos.list_commits_page(
                job.output_repo, branch=branch, state="open", limit=1
            )
        except NotFound:  # the repo is gone
            break
        found[kind] = next(
            (c.id for c in page.items if c.description == description(job, kind)), None
        )
    return replace(
        job,
        output_commit=found.get("output", job.output_commit),
        meta_commit=found.get("meta", job.meta_commit),
    )


async def _known_handles(x: Scope, job: JobView) -> list[ShardHandle]:
    async with x.deps.db.session(write=False) as session:
        rows = await store.shards_of(session, job.id)
    handles = {
        r.shard: ShardHandle(job.id, r.shard, r.attempt, r.handle)
        for r in rows
        if r.state == SHARD_STARTED and r.handle is not None
    }
    for handle in await x.deps.runner.find_running(job.id):
        handles[handle.shard] = handle
    return list(handles.values())


def failed_datums(datums: Iterable[Any]) -> list[str]:
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


def collisions(datums: Iterable[Any]) -> list[str]:
    by_id = {d.datum: d for d in datums if d.state in (DATUM_SUCCESS, RECOVERED, SKIPPED)}
    found = find_output_collisions({i: [o["path"] for o in d.outputs] for i, d in by_id.items()})
    named = [
        f"datums {a} ({describe_inputs(by_id[a].inputs)}) and {b} "
        f"({describe_inputs(by_id[b].inputs)}) both write {path}"
        for path, a, b in found[:MAX_NAMED]
    ]
    more = f" and {len(found) - MAX_NAMED} more" if len(found) > MAX_NAMED else ""
    return ["output collision: " + "; ".join(named) + more] if found else []
