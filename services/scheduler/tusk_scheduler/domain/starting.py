"""Starting a job: ``created → starting → running``.

Opens the output commit empty (provenance: the input commits; global id: the job's: the output
is exactly the carried-forward outputs plus the new datums' outputs) and the meta commit; their
ids are recorded with the start, and a commit opened by a start that failed or crashed first is
recognised by its description, adopted and emptied (or, should the job fail meanwhile,
finished). It computes the datums, writes the shard specs (unless the runner hands them to the
workers: then once they are under way), then records datums, shards and ``running`` in one
transaction; the outputs of the datums an earlier job of the same pipeline version processed
are linked once the workers start. Repeating it redoes all of that, and nothing else has
touched the output commit yet.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from tusk.client import CommitInfo, CommitRef
from tusk.errors import Conflict, NotFound
from tusk.events.types import DatumCounts, JobStarted
from tusk.pipelines import Datum, PipelineSpec
from tusk.worker.protocol import META_BRANCH, ShardSpec, shard_path
from tusk_scheduler import store
from tusk_scheduler.domain.job import (
    DESCRIPTION,
    JobFailure,
    JobView,
    Scope,
    description,
    spec_of,
    together,
)
from tusk_scheduler.domain.planning import JobPlan, datum_spec, job_datums, make_plan, shard_spec
from tusk_scheduler.tables import (
    CREATED,
    FINAL_STATES,
    PENDING,
    RUNNING,
    SHARD_PENDING,
    SKIPPED,
    STARTING,
)

LINK_BATCH = 10_000  # carried-forward files per link request


@dataclass(frozen=True)
class Started:
    """A start this execution has just recorded, handed to running."""

    job: JobView  # as the row says now: running, with its commits, start time and counts
    # Its skipped datums are still to be recorded and their outputs linked.
    plan: JobPlan
    # The shard specs, for a runner that hands them to the workers (and then they are still to
    # be written to the meta commit); every shard and datum is pending.
    specs: dict[int, ShardSpec]


async def mark_starting(x: Scope, job: JobView) -> JobView:
    """``created → starting``; the job as it is now."""
    async with x.deps.db.session() as session:
        if await store.update_job(session, job.id, expect=[CREATED], state=STARTING):
            return replace(job, state=STARTING)  # and on, without reading the row again
    return job


async def start(x: Scope, job: JobView) -> Started | None:
    """Open the commits, plan, record ``running``; None when the job was no longer starting
    (the next turn reads why)."""
    deps = x.deps
    spec = spec_of(job)
    repo = job.output_repo

    async def open_output() -> str:
        commit, started = await open_commit(x, job, job.output_branch, "output", job.output_commit)
        if not started:  # adopted: it may hold what an earlier run (or version) put there
            with contextlib.suppress(NotFound):  # NotFound: nothing to remove
                await deps.repos.delete_file(repo, commit, "/")
        return commit

    async def open_meta() -> str:
        commit, _ = await open_commit(x, job, META_BRANCH, "meta", job.meta_commit)
        return commit

    # Independent of each other: opening the output commit (empty: the output is exactly
    # the carried-forward outputs plus the new datums'), opening the meta commit, planning.
    output_commit, meta_commit, plan = await together(open_output(), open_meta(), plan_job(x, job))
    job = replace(job, output_commit=output_commit, meta_commit=meta_commit)
    x.check_stop()
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
        await put_specs(x, job, specs)
    running = await record_start(x, job, plan)
    if running is None:
        return None
    return Started(running, plan, {s.shard: s for s in specs})


async def open_commit(
    x: Scope, job: JobView, branch: str, kind: str, opened: str | None, *, clear: bool = True
) -> tuple[str, bool]:
    """Open the job's output or meta commit, or adopt the one a crashed run opened
    (``opened``: the one recorded already); the caller records it. The commit, and whether
    this call started it (an output commit started here starts empty).

    A commit that an ended job left open on the branch (a start cancelled while its
    request was under way) is abandoned first (``clear``); one that is not a job's stops
    the job."""
    if opened is not None:
        return opened, False
    deps = x.deps
    said = description(job, kind)
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
            description=said,
            provenance=provenance,
            global_id=job.global_id,
            empty=kind == "output",
            # The job's own repo takes commits only from its pipeline.
            pipeline=job.pipeline,
        )
        commit, started = info.id, True
    except Conflict as e:
        open_commit_id = e.details.get("open_commit")
        if not isinstance(open_commit_id, str):
            raise
        found = await deps.repos.inspect_commit(job.output_repo, open_commit_id)
        if found.description != said and clear and await _of_ended_job(x, found):
            x.log.warning(
                "abandoning a commit an ended job left open",
                repo=job.output_repo,
                commit=open_commit_id,
                description=found.description,
            )
            with contextlib.suppress(NotFound):
                await deps.repos.abandon_commit(job.output_repo, open_commit_id)
            return await open_commit(x, job, branch, kind, None, clear=False)
        if found.description != said:
            raise JobFailure(
                f"branch {branch!r} of the output repo {job.output_repo!r} has an open commit "
                f"{open_commit_id} that is not this job's; finish or abandon it, then run the "
                "job again"
            ) from None
        commit, started = open_commit_id, False
    except NotFound as e:
        raise JobFailure(f"cannot open the {kind} commit: {e.message}") from None
    x.log.info(f"{kind} commit opened", repo=job.output_repo, branch=branch, commit=commit)
    return commit, started


async def _of_ended_job(x: Scope, commit: CommitInfo) -> bool:
    """Whether ``commit`` is an output or meta commit of a job that has ended."""
    match = DESCRIPTION.fullmatch(commit.description)
    if match is None:
        return False
    async with x.deps.db.session(write=False) as session:
        try:
            other = await store.get_job(session, match["job"])
        except NotFound:
            return False
    return other.state in FINAL_STATES


async def record_start(x: Scope, job: JobView, plan: JobPlan) -> JobView | None:
    """``running``, with the new datums and the shards (the skipped datums follow once the
    workers are started: with thousands of them, writing their rows takes a while); the job as
    the row now says, or None when it was not starting any more."""
    output_commit, meta_commit = job.commits()
    now = datetime.now(UTC)
    datum_rows = [
        datum_row(job.id, d, state=PENDING, shard=n)
        for n, shard in enumerate(plan.shards)
        for d in shard
    ]
    shard_rows = [
        {"job": job.id, "shard": n, "attempt": 0, "state": SHARD_PENDING}
        for n in range(len(plan.shards))
    ]
    counts = DatumCounts(total=len(plan.datums), skipped=len(plan.plan.skipped))
    async with x.deps.db.session() as session:
        if not await store.update_job(
            session,
            job.id,
            expect=[STARTING],
            state=RUNNING,
            started_at=now,
            counts=counts.model_dump(),
            output_commit=output_commit,
            meta_commit=meta_commit,
        ):
            return None
        await store.insert_datums(session, datum_rows)
        await store.insert_shards(session, shard_rows)
        await x.deps.outbox.add(
            session,
            JobStarted(
                job=job.id,
                pipeline=job.pipeline,
                output_commit=output_commit,
                counts=counts,
                started_at=now,
            ),
        )
    x.log.info(
        "job started",
        datums=len(plan.datums),
        skipped=len(plan.plan.skipped),
        shards=len(plan.shards),
        output_commit=output_commit,
    )
    return replace(job, state=RUNNING, started_at=now, counts=counts.model_dump())


async def plan_job(x: Scope, job: JobView, spec: PipelineSpec | None = None) -> JobPlan:
    spec = spec or spec_of(job)
    commits = {i["name"]: i["commit"] for i in job.inputs}
    datums = await job_datums(spec, commits, x.deps.repos)
    processed: dict[str, list[dict[str, Any]]] = {}
    if spec.reprocess_spec != "every_job":  # every_job: no datum counts as done before
        async with x.deps.db.session(write=False) as session:
            processed = await store.processed_outputs(
                session, job.pipeline, spec.datum_identity(), [d.id for d in datums]
            )
    return make_plan(spec, datums, processed, max_shards=x.deps.runner.max_shards)


async def put_specs(x: Scope, job: JobView, specs: Sequence[ShardSpec]) -> None:
    """Write shard specs to the job's meta commit, where workers and people read them."""
    _, meta_commit = job.commits()
    if specs:
        await x.deps.repos.put_files(
            job.output_repo,
            meta_commit,
            [(shard_path(job.id, s.shard), s.model_dump_json().encode()) for s in specs],
        )


async def record_carried(x: Scope, job: JobView, plan: JobPlan) -> None:
    """The rows of the skipped datums (rows already there after a crash are kept)."""
    rows = [
        datum_row(job.id, d, state=SKIPPED, outputs=plan.carried[d.id]) for d in plan.plan.skipped
    ]
    async with x.deps.db.session() as session:
        await store.insert_datums(session, rows, skip_existing=True)
    x.deps.metrics.datums.labels(SKIPPED).inc(len(rows))


async def link(x: Scope, job: JobView, commit: str, links: Sequence[tuple[str, str]]) -> None:
    """Link carried-forward outputs (path, content hash) into ``commit``, in batches."""
    for begin in range(0, len(links), LINK_BATCH):
        await x.deps.repos.link_files(
            job.output_repo, commit, list(links[begin : begin + LINK_BATCH])
        )


def datum_row(
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
