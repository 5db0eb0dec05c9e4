"""Pipelines and jobs. Methods take the caller's session and only flush; events go through the
outbox in the same transaction as the change they announce. SQL is the store's.

Nothing here calls another service inside a write transaction: what a change needs from the
repo service (input repos checked, output and cron repos made, branch heads read) is fetched
first, by the methods that take no session, and handed in."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import blake3
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from tusk import shortid
from tusk.client.repo import RepoClient
from tusk.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from tusk.events.outbox import OutboxWriter
from tusk.events.types import (
    CommitFinished,
    DatumCounts,
    InputCommit,
    JobCancel,
    JobCreated,
    JobDeleted,
    JobFailed,
    JobProgress,
    JobStarted,
    JobSucceeded,
)
from tusk.paths import qualified_name
from tusk.pipelines.compat import spec_warnings
from tusk.pipelines.models import BranchTrigger, next_tick
from tusk.pipelines.spec import PipelineSpec, cron_repo_name, find_cycle
from tusk.wire.specs import PipelineVersionSpec, spec_digest
from tusk_trigger import store
from tusk_trigger.cron import commit_tick
from tusk_trigger.job_spec import check_job_spec_size
from tusk_trigger.schemas import TERMINAL_STATES, JobInfo, PipelineInfo
from tusk_trigger.tables import BranchScheduleRow, CronRow, JobRow, PipelineRow

JOB_ID_LENGTH = 32

log = structlog.get_logger()


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class InputBranch:
    """A branch a pipeline reads: a pfs input, or the repo behind a cron input."""

    name: str
    repo: str
    branch: str


def input_branches(spec: PipelineSpec) -> list[InputBranch]:
    branches = [InputBranch(p.key, p.repo, p.branch) for p in spec.pfs_inputs()]
    branches += [
        InputBranch(c.name, cron_repo_name(spec.name, c.name), "master")
        for c in spec.cron_inputs()
    ]
    return branches


Heads = Mapping[tuple[str, str], str | None]
"""The head commit of each (repo, branch) read, None when it has none or its head failed."""


def input_key(inputs: Sequence[InputCommit], restart_of: str | None = None) -> str:
    """The natural key of a job among its pipeline version's: its input commits (and, for a
    restart, the job restarted, so that it is a new job, made once)."""
    pairs: list[Any] = sorted((i.name, i.repo, i.commit) for i in inputs)
    if restart_of is not None:
        pairs.append(["restart", restart_of])
    return blake3.blake3(json.dumps(pairs).encode()).hexdigest()


class TriggerService:
    def __init__(self, repos: RepoClient, outbox: OutboxWriter) -> None:
        self.repos = repos
        self.outbox = outbox

    # --- what a change needs from the repo service (no session: never under a lock) ----------

    async def read_heads(
        self, branches: Iterable[InputBranch]
    ) -> dict[tuple[str, str], str | None]:
        """The head commit of each branch, for jobs to run on."""
        heads: dict[tuple[str, str], str | None] = {}
        for branch in branches:
            key = (branch.repo, branch.branch)
            if key in heads:
                continue
            try:
                head = await self.repos.inspect_commit(branch.repo, branch.branch)
            except NotFound:
                heads[key] = None
                continue
            heads[key] = head.id if head.error is None else None
        return heads

    async def prepare_repos(self, spec: PipelineSpec, *, output: bool) -> None:
        """Check that the inputs exist; make the cron repos (with a first tick) and, with
        ``output``, the output repo."""
        await self._check_inputs(spec)
        if output:
            name = spec.name
            await self._ensure_repo(
                name, f"output of pipeline {name}", adopt_empty=True, owner=name
            )
        await self._ensure_cron_repos(spec)

    async def delete_repos(self, repos: Iterable[str]) -> None:
        for repo in repos:
            with contextlib.suppress(NotFound):
                await self.repos.delete_repo(repo, force=True)

    # --- pipelines ---------------------------------------------------------------------------

    async def check_new(self, session: AsyncSession, spec: PipelineSpec) -> None:
        name = spec.name
        if await store.pipeline(session, name) is not None:
            raise AlreadyExists(f"pipeline {name!r} already exists (use update)")
        await self._check_graph(session, spec)

    async def check_update(self, session: AsyncSession, name: str, spec: PipelineSpec) -> None:
        name = qualified_name("pipeline", name)
        if spec.name != name:
            raise InvalidArgument(
                f"pipeline.name: the spec names {spec.name!r}, not {name!r}"
            )
        await self._pipeline(session, name)
        await self._check_graph(session, spec)

    async def create_pipeline(
        self, session: AsyncSession, spec: PipelineSpec, heads: Heads
    ) -> PipelineInfo:
        """Store version 1 and run a first job if every input already has a commit."""
        name = spec.name
        document = spec.to_dict()
        check_job_spec_size(document)
        now = _now()
        if not await store.insert_pipeline(session, name, document, now):
            raise AlreadyExists(f"pipeline {name!r} already exists (use update)")
        await store.replace_crons(session, name, _crons(spec, now))
        await store.replace_branch_schedules(session, name, _branch_schedules(spec, now))
        await self.create_job(session, name, heads)
        return await self.pipeline_info(session, await self._pipeline(session, name))

    async def update_pipeline(
        self,
        session: AsyncSession,
        name: str,
        spec: PipelineSpec,
        *,
        reprocess: bool,
        heads: Heads,
    ) -> PipelineInfo:
        """Store a new version. It applies to input commits from now on; with ``reprocess`` a
        job of the new version also runs at once on ``heads``."""
        check_job_spec_size(spec.to_dict())
        now = _now()
        row = await self._pipeline(session, name, lock=True)
        # A datum's identity survives the update unless the user asks to reprocess: the
        # salt is kept (a spec that sets its own wins), or made anew.
        if reprocess:
            spec = spec.model_copy(update={"salt": uuid.uuid4().hex})
        elif spec.salt is None and row.spec.get("salt") is not None:
            spec = spec.model_copy(update={"salt": row.spec["salt"]})
        document = spec.to_dict()
        row.version += 1
        row.spec = document
        row.updated_at = now
        store.add_version(session, name, row.version, document, now)
        await store.replace_crons(session, name, _crons(spec, now))
        await store.replace_branch_schedules(session, name, _branch_schedules(spec, now))
        if reprocess:
            await self.create_job(session, name, heads)
        return await self.pipeline_info(session, row)

    async def delete_pipeline(self, session: AsyncSession, name: str) -> list[str]:
        """Delete the pipeline (refused while others read its output) and cancel its jobs;
        the repos that were its own (output and cron repos), for the caller to delete."""
        row = await self._pipeline(session, name, lock=True)
        readers = [
            p.name
            for p in await store.all_pipelines(session)
            if p.name != name and any(b.repo == name for b in input_branches(self._spec(p)))
        ]
        if readers:
            raise Conflict(
                f"pipeline {name!r} feeds {', '.join(sorted(readers))}; delete those first"
            )
        spec = self._spec(row)
        await self._cancel_active_jobs(session, name, "pipeline deleted")
        await store.delete_pipeline(session, row)
        return [name, *(cron_repo_name(name, c.name) for c in spec.cron_inputs())]

    async def input_branches_of(self, session: AsyncSession, name: str) -> list[InputBranch]:
        return input_branches(self._spec(await self._pipeline(session, name)))

    async def set_state(
        self, session: AsyncSession, name: str, state: str, heads: Heads
    ) -> PipelineInfo:
        """``stopped``: no new jobs, running ones are cancelled; ``running``: a job runs on
        ``heads`` (the latest input commits)."""
        row = await self._pipeline(session, name, lock=True)
        if row.state != state:
            row.state = state
            row.updated_at = _now()
            await session.flush()
            if state == "stopped":
                await self._cancel_active_jobs(session, name, "pipeline stopped")
            else:
                await self.create_job(session, name, heads)
        return await self.pipeline_info(session, row)

    async def list_pipelines(self, session: AsyncSession) -> list[PipelineInfo]:
        rows = await store.all_pipelines(session)
        newest = await store.newest_jobs(session)
        return [self._info(row, newest.get(row.name)) for row in rows]

    async def inspect_pipeline(self, session: AsyncSession, name: str) -> PipelineInfo:
        return await self.pipeline_info(session, await self._pipeline(session, name))

    async def pipeline_version(
        self, session: AsyncSession, name: str, version: int
    ) -> PipelineVersionSpec:
        """The spec of one version of the pipeline, as its jobs run it."""
        row = await store.pipeline_version(session, name, version)
        if row is None:
            latest = await store.pipeline(session, name)
            raise NotFound(
                f"pipeline {name!r} not found"
                if latest is None
                else f"pipeline {name!r} has no version {version} (versions 1 to {latest.version})"
            )
        return PipelineVersionSpec(
            pipeline=name,
            version=version,
            digest=spec_digest(row.spec),
            spec=row.spec,
            created_at=row.created_at,
        )

    async def pipeline_info(self, session: AsyncSession, row: PipelineRow) -> PipelineInfo:
        return self._info(row, await store.last_job(session, row.name))

    def _info(self, row: PipelineRow, last: JobRow | None) -> PipelineInfo:
        spec = self._spec(row)
        return PipelineInfo(
            name=row.name,
            version=row.version,
            state=row.state,
            description=spec.description or "",
            input_repos=sorted({b.repo for b in input_branches(spec)}),
            output_repo=row.name,
            output_branch=spec.output_branch,
            spec=row.spec,
            created_at=row.created_at,
            updated_at=row.updated_at,
            last_job=last.id if last else None,
            last_job_state=last.state if last else None,
            warnings=spec_warnings(spec),
        )

    # --- jobs --------------------------------------------------------------------------------

    async def branches_to_read(
        self, session: AsyncSession, event: CommitFinished
    ) -> list[InputBranch]:
        """The branches whose heads :meth:`on_commit_finished` needs: the other inputs of
        every running pipeline that reads the commit's branch."""
        if event.branch is None or event.error is not None:
            return []
        return [
            branch
            for _, reads, others in await self._readers(session, event)
            if reads
            for branch in others
        ]

    async def on_commit_finished(
        self, session: AsyncSession, event: CommitFinished, heads: Heads
    ) -> None:
        """Create a job for every running pipeline that reads the commit's branch, on the
        commit and ``heads`` for its other inputs."""
        if event.branch is None:
            return
        if event.error is not None:
            log.info("not triggering on a failed commit", repo=event.repo, commit=event.commit)
            return
        for row, reads, _ in await self._readers(session, event):
            if reads:
                await self.create_job(
                    session,
                    row.name,
                    heads,
                    pinned={b.name: event.commit for b in reads},
                    global_id=event.global_id,
                )

    # --- branch triggers (Pachyderm's pfs.trigger) ---------------------------------------

    async def trigger_watches(
        self, session: AsyncSession, event: CommitFinished
    ) -> list[tuple[str, str, BranchTrigger]]:
        """(repo, input branch, trigger) of each running pipeline's input whose trigger
        watches the event's branch: the input branch moves to it when the trigger fires."""
        if event.branch is None or event.error is not None:
            return []
        found: dict[tuple[str, str], BranchTrigger] = {}
        for row in await store.all_pipelines(session):
            if row.state != "running":
                continue
            for pfs in self._spec(row).pfs_inputs():
                watched = pfs.trigger.branch if pfs.trigger is not None else None
                if pfs.trigger is None or pfs.repo != event.repo:
                    continue
                if (watched or "master") == event.branch and pfs.branch != event.branch:
                    found.setdefault((pfs.repo, pfs.branch), pfs.trigger)
        return [(repo, branch, trigger) for (repo, branch), trigger in found.items()]

    async def fire_triggers(
        self, event: CommitFinished, watches: Sequence[tuple[str, str, BranchTrigger]]
    ) -> list[CommitFinished]:
        """Move each watching branch to the event's commit where its trigger's condition holds
        (what was added since the branch's head: ``size`` bytes, ``commits`` commits, a tick
        of ``rate_limit_spec`` passed; any of them, or with ``all`` every one); for each branch
        moved (or already there: a redelivered
        event), the event as if the commit had been finished on that branch."""
        fired: list[CommitFinished] = []
        for repo, branch, trigger in watches:
            try:
                head = (await self.repos.inspect_branch(repo, branch)).head
            except NotFound:
                head = None
            if head != event.commit:
                if not await self._condition_holds(
                    repo, head, event.commit, trigger, ticked=False
                ):
                    continue
                if head is None:
                    await self.repos.create_branch(repo, branch, head=event.commit)
                else:
                    await self.repos.move_branch(repo, branch, event.commit)
                log.info(
                    "branch trigger fired", repo=repo, branch=branch, head=event.commit,
                    watched=event.branch,
                )  # fmt: skip
            fired.append(event.model_copy(update={"branch": branch}))
        return fired

    async def _condition_holds(
        self, repo: str, head: str | None, new: str, trigger: BranchTrigger, *, ticked: bool
    ) -> bool:
        """``ticked``: asked on a tick of ``cron_spec`` (its condition), not on a commit."""
        checks: list[bool] = []
        if trigger.cron_spec is not None:
            checks.append(ticked)
        if trigger.commits is not None:
            added = 0
            async for commit in self.repos.log(repo, new):
                if commit.id == head or added >= trigger.commits:
                    break
                added += 1
            checks.append(added >= trigger.commits)
        if trigger.size is not None:
            now = (await self.repos.inspect_commit(repo, new)).size_bytes or 0
            before = 0
            if head is not None:
                before = (await self.repos.inspect_commit(repo, head)).size_bytes or 0
            checks.append(now - before >= trigger.size)
        if trigger.rate_limit_spec is not None:
            finished = (await self.repos.inspect_commit(repo, new)).finished_at
            head_finished = None
            if head is not None:
                head_finished = (await self.repos.inspect_commit(repo, head)).finished_at
            checks.append(
                finished is not None and trigger.rate_limit_passed(head_finished, finished)
            )
        return all(checks) if trigger.all else any(checks)

    # --- cron branch triggers (pfs.trigger.cron_spec) ----------------------------------------

    async def due_branch_ticks(
        self, session: AsyncSession, now: datetime
    ) -> list[tuple[BranchScheduleRow, BranchTrigger]]:
        """Each due schedule with its trigger as the pipeline's current version has it."""
        due = []
        for row in await store.due_branch_schedules(session, now):
            pipeline = await self._pipeline(session, row.pipeline)
            for pfs in self._spec(pipeline).pfs_inputs():
                if pfs.key == row.input_name and pfs.trigger is not None:
                    due.append((row, pfs.trigger))
                    break
        return due

    async def branch_tick_target(
        self, row: BranchScheduleRow, trigger: BranchTrigger
    ) -> str | None:
        """The watched branch's head, if the tick should move the input branch there: it is
        finished without error, differs from the input branch's head, and (with ``all``) the
        trigger's size and commits conditions hold too."""
        try:
            watched = await self.repos.inspect_commit(row.repo, row.watched)
        except NotFound:
            return None  # nothing committed to the watched branch yet
        if watched.error is not None or watched.finished_at is None:
            return None
        try:
            head = (await self.repos.inspect_branch(row.repo, row.branch)).head
        except NotFound:
            head = None
        if head == watched.id:
            return None
        if not await self._condition_holds(row.repo, head, watched.id, trigger, ticked=True):
            return None
        return watched.id

    async def claim_branch_tick(
        self, session: AsyncSession, row: BranchScheduleRow, now: datetime, target: str | None
    ) -> bool:
        """Move the schedule past ``now`` and record the commit the tick moves the branch to;
        False if another replica claimed the tick first."""
        current = await store.branch_schedule_for_update(session, row.pipeline, row.input_name)
        if current is None or current.next_tick_at != row.next_tick_at or current.firing:
            return False
        # Ticks missed while nothing ran are not replayed: one look, then the next future tick.
        current.next_tick_at = next_tick(current.spec, max(now, row.next_tick_at))
        current.firing = target
        await session.flush()
        return True

    async def move_for_tick(self, row: BranchScheduleRow, commit: str) -> CommitFinished:
        """Move the input branch to ``commit`` (again after a crash: then it is there already);
        the event as if ``commit`` had been finished on the input branch."""
        try:
            head = (await self.repos.inspect_branch(row.repo, row.branch)).head
        except NotFound:
            await self.repos.create_branch(row.repo, row.branch, head=commit)
        else:
            if head != commit:
                await self.repos.move_branch(row.repo, row.branch, commit)
        info = await self.repos.inspect_commit(row.repo, commit)
        log.info(
            "cron branch trigger fired", pipeline=row.pipeline, repo=row.repo,
            branch=row.branch, head=commit, watched=row.watched, schedule=row.spec,
        )  # fmt: skip
        return CommitFinished(
            repo=row.repo,
            commit=commit,
            branch=row.branch,
            parent=info.parent,
            global_id=info.global_id,
            finished_at=info.finished_at or info.started_at,
            size_bytes=info.size_bytes or 0,
            file_count=info.file_count or 0,
        )

    async def finish_branch_tick(
        self, session: AsyncSession, row: BranchScheduleRow, event: CommitFinished, heads: Heads
    ) -> None:
        """The jobs of the pipelines that read the moved branch, and the tick done, in one
        transaction (jobs are made once per input commits, so finishing twice makes none)."""
        current = await store.branch_schedule_for_update(session, row.pipeline, row.input_name)
        if current is None or current.firing != event.commit:
            return
        await self.on_commit_finished(session, event, heads)
        current.firing = None
        await session.flush()

    async def _readers(
        self, session: AsyncSession, event: CommitFinished
    ) -> list[tuple[PipelineRow, list[InputBranch], list[InputBranch]]]:
        """Each running pipeline with its inputs on the event's branch and its other inputs."""
        out = []
        for row in await store.all_pipelines(session):
            if row.state != "running":
                continue
            branches = input_branches(self._spec(row))
            on_it = [b for b in branches if (b.repo, b.branch) == (event.repo, event.branch)]
            out.append((row, on_it, [b for b in branches if b not in on_it]))
        return out

    async def create_job(
        self,
        session: AsyncSession,
        pipeline: str,
        heads: Heads,
        *,
        pinned: dict[str, str] | None = None,
        global_id: str | None = None,
        restart_of: str | None = None,
    ) -> JobRow | None:
        """One job of the pipeline's current version on ``heads`` (``pinned`` inputs at the
        given commits). Nothing when an input has no commit yet or its head failed, and
        nothing new when that version already has a job on those commits."""
        row = await self._pipeline(session, pipeline)
        spec = self._spec(row)
        if spec.spout is not None or spec.service is not None:
            # A spout makes its own commits and a service serves its inputs' latest commits:
            # the scheduler keeps their commands running, with no jobs.
            return None
        inputs: list[InputCommit] = []
        for branch in input_branches(spec):
            commit = (pinned or {}).get(branch.name)
            if commit is None:
                key = (branch.repo, branch.branch)
                if key not in heads:
                    # The spec changed between reading the heads and now; the change's own
                    # job (or the next commit) runs the new inputs.
                    log.info("inputs changed meanwhile; no job", pipeline=pipeline)
                    return None
                commit = heads[key]
                if commit is None:
                    log.info("job waits for input", pipeline=pipeline, input=branch.name)
                    return None
            inputs.append(
                InputCommit(name=branch.name, repo=branch.repo, branch=branch.branch, commit=commit)
            )
        job_id = uuid.uuid4().hex
        now = _now()
        job = await store.insert_job(
            session,
            {
                "id": job_id,
                "pipeline": pipeline,
                "version": row.version,
                "input_key": input_key(inputs, restart_of),
                "inputs": [i.model_dump() for i in inputs],
                "global_id": global_id or job_id,
                "output_repo": pipeline,
                "output_branch": spec.output_branch,
                "state": "created",
                "reason": None,
                "output_commit": None,
                "counts": DatumCounts().model_dump(),
                "created_at": now,
                "started_at": None,
                "finished_at": None,
            },
        )
        if job is None:
            return None
        await self.outbox.add(
            session,
            JobCreated(
                job=job.id,
                pipeline=pipeline,
                version=row.version,
                spec_digest=spec_digest(row.spec),
                inputs=tuple(inputs),
                global_id=job.global_id,
                output_repo=pipeline,
                output_branch=spec.output_branch,
                created_at=now,
            ),
        )
        log.info(
            "job created",
            pipeline=pipeline,
            job=job.id,
            version=row.version,
            inputs={i.name: i.commit for i in inputs},
        )
        return job

    async def on_job_event(
        self, session: AsyncSession, event: JobStarted | JobProgress | JobSucceeded | JobFailed
    ) -> None:
        job = await store.job(session, event.job, lock=True)
        if job is None or job.state in TERMINAL_STATES:
            return  # unknown (deleted pipeline) or already ended: later news changes nothing
        job.counts = event.counts.model_dump()
        if isinstance(event, JobStarted):
            job.state, job.output_commit, job.started_at = (
                "running",
                event.output_commit,
                event.started_at,
            )
        elif isinstance(event, JobSucceeded):
            job.state, job.output_commit, job.finished_at = (
                "success",
                event.output_commit,
                event.finished_at,
            )
            job.reason = event.warning
        elif isinstance(event, JobFailed):
            job.state = "killed" if event.killed else "failure"
            job.reason, job.finished_at = event.reason, event.finished_at
            job.output_commit = event.output_commit or job.output_commit
        await session.flush()

    async def restart_job(self, session: AsyncSession, job_id: str) -> JobInfo:
        """Run the job's failed datums again: a new job of the pipeline on the same input
        commits, in which every datum the job (or an earlier one) processed is skipped and its
        outputs carried forward, as for any job. Asking twice gives the same new job."""
        job = await self._job(session, job_id)
        if job.state not in TERMINAL_STATES:
            raise Conflict(
                f"job {job.id} is {job.state}: its datums are still being tried; wait for it to "
                "end (tusk job wait) or stop it (tusk job stop) first"
            )
        counts = DatumCounts.model_validate(job.counts)
        if job.state == "success" and not counts.failed:
            raise Conflict(f"job {job.id} succeeded with no failed datum: nothing to restart")
        row = await self._pipeline(session, job.pipeline, lock=True)
        if row.state != "running":
            raise Conflict(f"pipeline {job.pipeline!r} is stopped; start it first")
        inputs = [InputCommit.model_validate(i) for i in job.inputs]
        again = await store.job_by_key(
            session, job.pipeline, row.version, input_key(inputs, job.id)
        )
        if again is not None:
            return job_info(again)
        last = await store.last_job(session, job.pipeline)
        if last is not None and last.id != job.id:
            raise Conflict(
                f"job {job.id} is not pipeline {job.pipeline!r}'s latest (job {last.id} came "
                "after it, on newer inputs): restarting it would put older results at the head "
                f"of {job.output_repo}@{job.output_branch}; restart job {last.id} instead"
            )
        created = await self.create_job(
            session,
            job.pipeline,
            {},
            pinned={i.name: i.commit for i in inputs},
            global_id=job.global_id,
            restart_of=job.id,
        )
        if created is None:  # the spec's inputs changed since the job: they are not the same
            raise Conflict(
                f"pipeline {job.pipeline!r} no longer reads the inputs job {job.id} ran on; "
                "update the pipeline with --reprocess to run it on its current inputs"
            )
        log.info("job restarted", job=job.id, new_job=created.id, failed=counts.failed)
        return job_info(created)

    async def deletable_job(self, session: AsyncSession, job_id: str) -> JobInfo:
        """The job, if it has ended (a job that runs must be stopped before it is deleted)."""
        job = await self._job(session, job_id)
        if job.state not in TERMINAL_STATES:
            raise Conflict(
                f"job {job.id} is {job.state}; stop it first (tusk job stop {job.id[:8]})"
            )
        return job_info(job)

    async def forget_jobs(
        self, session: AsyncSession, job: JobInfo, dropped: Sequence[tuple[str, str]]
    ) -> list[str]:
        """Delete the job and the jobs whose output commits were ``dropped`` with its output
        (``(repo, commit)``); the scheduler is told, so what they processed is processed again
        by later jobs. The ids deleted."""
        rows = [await self._job(session, job.id)]
        rows += [r for r in await store.jobs_with_output(session, dropped) if r.id != job.id]
        for row in rows:
            await store.delete_job(session, row.id)
            await self.outbox.add(
                session,
                JobDeleted(job=row.id, pipeline=row.pipeline, output_commit=row.output_commit),
            )
        log.info("jobs deleted", jobs=[r.id for r in rows])
        return [r.id for r in rows]

    async def stop_job(self, session: AsyncSession, job_id: str) -> JobInfo:
        job = await self._job(session, job_id)
        if job.state not in TERMINAL_STATES:
            await self.outbox.add(
                session, JobCancel(job=job.id, pipeline=job.pipeline, reason="stopped by user")
            )
        return job_info(job)

    async def list_jobs(
        self,
        session: AsyncSession,
        *,
        pipeline: str | None,
        state: str | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[JobInfo], str | None]:
        after = None
        if cursor is not None:
            when, _, last_id = cursor.partition("_")
            try:
                after = (datetime.fromisoformat(when), last_id)
            except ValueError:
                raise InvalidArgument(f"invalid cursor {cursor!r}") from None
        rows = await store.jobs_page(
            session, pipeline=pipeline, state=state, limit=limit + 1, after=after
        )
        page = rows[:limit]
        nxt = f"{page[-1].created_at.isoformat()}_{page[-1].id}" if len(rows) > limit else None
        return [job_info(j) for j in page], nxt

    async def inspect_job(self, session: AsyncSession, job_id: str) -> JobInfo:
        return job_info(await self._job(session, job_id))

    # --- cron --------------------------------------------------------------------------------

    async def due_ticks(self, session: AsyncSession, now: datetime) -> list[CronRow]:
        return await store.due_crons(session, now)

    async def claim_tick(self, session: AsyncSession, row: CronRow, now: datetime) -> bool:
        """Move the schedule past ``now``; False if another replica already did."""
        current = await store.cron_for_update(session, row.pipeline, row.input_name)
        if current is None or current.next_tick_at != row.next_tick_at:
            return False
        pipeline = await self._pipeline(session, row.pipeline)
        cron = next(c for c in self._spec(pipeline).cron_inputs() if c.name == row.input_name)
        # Ticks missed while nothing ran are not replayed: one tick, then the next future one.
        current.next_tick_at = cron.next_tick(max(now, row.next_tick_at))
        return True

    # --- helpers -----------------------------------------------------------------------------

    async def _check_graph(self, session: AsyncSession, spec: PipelineSpec) -> None:
        graph = {
            p.name: [b.repo for b in input_branches(self._spec(p))]
            for p in await store.all_pipelines(session)
        }
        graph[spec.name] = [b.repo for b in input_branches(spec)]
        cycle = find_cycle(graph)
        if cycle:
            raise InvalidArgument(f"input: pipelines would form a cycle: {' -> '.join(cycle)}")

    async def _check_inputs(self, spec: PipelineSpec) -> None:
        for pfs in spec.pfs_inputs():
            if pfs.repo == spec.name:
                raise InvalidArgument(
                    f"input.pfs.repo: a pipeline cannot read its own output {pfs.repo!r}"
                )
            try:
                await self.repos.inspect_repo(pfs.repo)
            except NotFound:
                raise InvalidArgument(
                    f"input.pfs.repo: repo {pfs.repo!r} does not exist; create it first"
                ) from None

    async def _ensure_cron_repos(self, spec: PipelineSpec) -> None:
        """Each cron input's repo, with a first tick in it: the pipeline can then run on the
        data its other inputs already hold instead of waiting for the first scheduled tick."""
        for cron in spec.cron_inputs():
            repo = cron_repo_name(spec.name, cron.name)
            await self._ensure_repo(repo, f"ticks of {spec.name}.{cron.name}")
            if not (await self.repos.inspect_repo(repo)).commit_count:
                await commit_tick(self.repos, repo, _now(), overwrite=cron.overwrite)

    async def _ensure_repo(
        self, name: str, description: str, *, adopt_empty: bool = False, owner: str | None = None
    ) -> None:
        """``owner``: the pipeline whose output the repo is; only its jobs may write to it."""
        try:
            await self.repos.create_repo(name, description, pipeline=owner)
        except AlreadyExists:
            info = await self.repos.inspect_repo(name)
            if adopt_empty and info.commit_count:
                raise AlreadyExists(
                    f"a repo named {name!r} already holds commits; a pipeline writes to a repo "
                    "of its own name, so pick another pipeline name or delete that repo"
                ) from None
            if owner is not None and info.owner_pipeline != owner:
                await self.repos.set_repo_owner(name, owner)

    async def _cancel_active_jobs(self, session: AsyncSession, pipeline: str, reason: str) -> None:
        for job in await store.active_jobs(session, pipeline):
            await self.outbox.add(session, JobCancel(job=job.id, pipeline=pipeline, reason=reason))

    async def _pipeline(
        self, session: AsyncSession, name: str, *, lock: bool = False
    ) -> PipelineRow:
        name = qualified_name("pipeline", name)  # default/x is x
        row = await store.pipeline(session, name, lock=lock)
        if row is None:
            raise NotFound(f"pipeline {name!r} not found")
        return row

    async def _job(self, session: AsyncSession, job_id: str) -> JobRow:
        if shortid.is_prefix(job_id, JOB_ID_LENGTH):
            job_id = await store.expand_job_id(session, job_id) or job_id
        job = await store.job(session, job_id)
        if job is None:
            raise NotFound(f"job {job_id!r} not found")
        return job

    @staticmethod
    def _spec(row: PipelineRow) -> PipelineSpec:
        return PipelineSpec.model_validate(row.spec)


def _crons(spec: PipelineSpec, now: datetime) -> list[CronRow]:
    return [
        CronRow(
            pipeline=spec.name,
            input_name=cron.name,
            repo=cron_repo_name(spec.name, cron.name),
            spec=cron.spec,
            overwrite=cron.overwrite,
            next_tick_at=cron.next_tick(now),
        )
        for cron in spec.cron_inputs()
    ]


def _branch_schedules(spec: PipelineSpec, now: datetime) -> list[BranchScheduleRow]:
    return [
        BranchScheduleRow(
            pipeline=spec.name,
            input_name=pfs.key,
            repo=pfs.repo,
            branch=pfs.branch,
            watched=pfs.trigger.branch or "master",
            spec=pfs.trigger.cron_spec,
            next_tick_at=next_tick(pfs.trigger.cron_spec, now),
            firing=None,
        )
        for pfs in spec.pfs_inputs()
        if pfs.trigger is not None and pfs.trigger.cron_spec is not None
    ]


def job_info(job: JobRow) -> JobInfo:
    data: dict[str, Any] = {
        c: getattr(job, c)
        for c in (
            "id",
            "pipeline",
            "version",
            "state",
            "reason",
            "inputs",
            "global_id",
            "output_repo",
            "output_branch",
            "output_commit",
            "counts",
            "created_at",
            "started_at",
            "finished_at",
        )
    }
    return JobInfo.model_validate(data)
