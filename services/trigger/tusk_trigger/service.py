"""Pipelines and jobs. Methods take the caller's session and only flush; events go through the
outbox in the same transaction as the change they announce."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import blake3
import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tusk import shortid
from tusk.client.repo import RepoClient
from tusk.db import Database, insert_if_absent
from tusk.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from tusk.events.outbox import OutboxWriter
from tusk.events.types import (
    CommitFinished,
    DatumCounts,
    InputCommit,
    JobCancel,
    JobCreated,
    JobFailed,
    JobProgress,
    JobStarted,
    JobSucceeded,
)
from tusk.pipelines.compat import spec_warnings
from tusk.pipelines.spec import PipelineSpec, cron_repo_name, find_cycle, load_spec
from tusk_trigger.cron import commit_tick
from tusk_trigger.job_spec import check_job_spec_size, job_spec
from tusk_trigger.schemas import TERMINAL_STATES, JobInfo, PipelineInfo
from tusk_trigger.tables import CronRow, JobRow, PipelineRow, PipelineVersionRow

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
    branches = [InputBranch(p.name, p.repo, p.branch) for p in spec.pfs_inputs()]
    branches += [
        InputBranch(c.name, cron_repo_name(spec.pipeline.name, c.name), "master")
        for c in spec.cron_inputs()
    ]
    return branches


def _runnable(spec: PipelineSpec) -> PipelineSpec:
    """Refuse what tusk cannot run at all (rather than store a pipeline that never runs)."""
    if spec.spout is not None:
        raise InvalidArgument(
            "spout: spout pipelines (a long-running command committing by itself) are not "
            "supported yet; run the command yourself and `tusk put` into a repo"
        )
    return spec


def input_key(inputs: Sequence[InputCommit]) -> str:
    pairs = sorted((i.name, i.repo, i.commit) for i in inputs)
    return blake3.blake3(json.dumps(pairs).encode()).hexdigest()


class TriggerService:
    def __init__(self, db: Database, repos: RepoClient, outbox: OutboxWriter) -> None:
        self.db = db
        self.repos = repos
        self.outbox = outbox

    # --- pipelines ---------------------------------------------------------------------------

    async def create_pipeline(self, text: str | bytes) -> PipelineInfo:
        """Validate the spec, make the output repo (and cron repos), store version 1 and run
        a first job if every input already has a commit."""
        spec = _runnable(load_spec(text))
        name = spec.pipeline.name
        async with self.db.session(write=False) as session:
            if await session.get(PipelineRow, name) is not None:
                raise AlreadyExists(f"pipeline {name!r} already exists (use update)")
            await self._check_graph(session, spec)
        await self._check_inputs(spec)
        await self._ensure_repo(name, f"output of pipeline {name}", adopt_empty=True, owner=name)
        await self._ensure_cron_repos(spec)
        document = spec.to_dict()
        check_job_spec_size(document)
        now = _now()
        async with self.db.session() as session:
            inserted = await insert_if_absent(
                session,
                PipelineRow.__table__,
                {
                    "name": name,
                    "version": 1,
                    "spec": document,
                    "state": "running",
                    "created_at": now,
                    "updated_at": now,
                },
            )
            if not inserted:
                raise AlreadyExists(f"pipeline {name!r} already exists (use update)")
            session.add(PipelineVersionRow(pipeline=name, version=1, spec=document, created_at=now))
            self._schedule_crons(session, spec, now)
            await session.flush()
            await self.create_job_on_heads(session, name)
            row = await self._pipeline(session, name)
            return await self.pipeline_info(session, row)

    async def update_pipeline(
        self, name: str, text: str | bytes, *, reprocess: bool
    ) -> PipelineInfo:
        """Store a new version. It applies to input commits from now on; with ``reprocess`` a
        job of the new version also runs at once on the latest input commits."""
        spec = _runnable(load_spec(text))
        if spec.pipeline.name != name:
            raise InvalidArgument(
                f"pipeline.name: the spec names {spec.pipeline.name!r}, not {name!r}"
            )
        async with self.db.session(write=False) as session:
            await self._pipeline(session, name)
            await self._check_graph(session, spec)
        await self._check_inputs(spec)
        await self._ensure_cron_repos(spec)
        document = spec.to_dict()
        check_job_spec_size(document)
        now = _now()
        async with self.db.session() as session:
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
            session.add(
                PipelineVersionRow(
                    pipeline=name, version=row.version, spec=document, created_at=now
                )
            )
            for old in (
                await session.scalars(select(CronRow).where(CronRow.pipeline == name))
            ).all():
                await session.delete(old)
            await session.flush()
            self._schedule_crons(session, spec, now)
            await session.flush()
            if reprocess:
                await self.create_job_on_heads(session, name)
            return await self.pipeline_info(session, row)

    async def delete_pipeline(self, name: str, *, keep_repo: bool) -> None:
        async with self.db.session() as session:
            row = await self._pipeline(session, name, lock=True)
            readers = [
                p.name
                for p in await self._all_pipelines(session)
                if p.name != name and any(b.repo == name for b in input_branches(self._spec(p)))
            ]
            if readers:
                raise Conflict(
                    f"pipeline {name!r} feeds {', '.join(sorted(readers))}; delete those first"
                )
            spec = self._spec(row)
            await self._cancel_active_jobs(session, name, "pipeline deleted")
            await session.delete(row)
        if not keep_repo:
            for repo in [name, *(cron_repo_name(name, c.name) for c in spec.cron_inputs())]:
                with contextlib.suppress(NotFound):
                    await self.repos.delete_repo(repo, force=True)

    async def set_state(self, name: str, state: str) -> PipelineInfo:
        """``stopped``: no new jobs, running ones are cancelled; ``running``: jobs resume on
        the latest input commits."""
        async with self.db.session() as session:
            row = await self._pipeline(session, name, lock=True)
            if row.state != state:
                row.state = state
                row.updated_at = _now()
                await session.flush()
                if state == "stopped":
                    await self._cancel_active_jobs(session, name, "pipeline stopped")
                else:
                    await self.create_job_on_heads(session, name)
            return await self.pipeline_info(session, row)

    async def list_pipelines(self) -> list[PipelineInfo]:
        async with self.db.session(write=False) as session:
            rows = await self._all_pipelines(session)
            newest = await _newest_jobs(session)
            return [self._info(row, newest.get(row.name)) for row in rows]

    async def inspect_pipeline(self, name: str) -> PipelineInfo:
        async with self.db.session(write=False) as session:
            return await self.pipeline_info(session, await self._pipeline(session, name))

    async def pipeline_info(self, session: AsyncSession, row: PipelineRow) -> PipelineInfo:
        last = await session.scalar(
            select(JobRow)
            .where(JobRow.pipeline == row.name)
            .order_by(JobRow.created_at.desc())
            .limit(1)
        )
        return self._info(row, last)

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

    async def on_commit_finished(self, session: AsyncSession, event: CommitFinished) -> None:
        """Create a job for every running pipeline that reads the commit's branch."""
        if event.branch is None:
            return
        if event.error is not None:
            log.info("not triggering on a failed commit", repo=event.repo, commit=event.commit)
            return
        for row in await self._all_pipelines(session):
            if row.state != "running":
                continue
            reads = [
                b
                for b in input_branches(self._spec(row))
                if (b.repo, b.branch) == (event.repo, event.branch)
            ]
            if reads:
                await self.create_job_on_heads(
                    session,
                    row.name,
                    pinned={b.name: event.commit for b in reads},
                    global_id=event.global_id,
                )

    async def create_job_on_heads(
        self,
        session: AsyncSession,
        pipeline: str,
        *,
        pinned: dict[str, str] | None = None,
        global_id: str | None = None,
    ) -> JobRow | None:
        """One job of the pipeline's current version on its inputs' latest commits (``pinned``
        inputs at the given commits). Nothing when an input has no commit yet or its head
        failed, and nothing new when that version already has a job on those commits."""
        row = await self._pipeline(session, pipeline)
        spec = self._spec(row)
        inputs: list[InputCommit] = []
        for branch in input_branches(spec):
            commit = (pinned or {}).get(branch.name)
            if commit is None:
                try:
                    head = await self.repos.inspect_commit(branch.repo, branch.branch)
                except NotFound:
                    log.info("job waits for input", pipeline=pipeline, input=branch.name)
                    return None
                if head.error is not None:
                    log.info("input head failed; no job", pipeline=pipeline, input=branch.name)
                    return None
                commit = head.id
            inputs.append(
                InputCommit(name=branch.name, repo=branch.repo, branch=branch.branch, commit=commit)
            )
        job_id = uuid.uuid4().hex
        now = _now()
        created = await insert_if_absent(
            session,
            JobRow.__table__,
            {
                "id": job_id,
                "pipeline": pipeline,
                "version": row.version,
                "input_key": input_key(inputs),
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
        if not created:
            return None
        job = await self._job(session, job_id)
        await self.outbox.add(
            session,
            JobCreated(
                job=job.id,
                pipeline=pipeline,
                version=row.version,
                spec=job_spec(row.spec),
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
        job = await session.get(JobRow, event.job, with_for_update=True)
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

    async def stop_job(self, job_id: str) -> JobInfo:
        async with self.db.session() as session:
            job = await self._job(session, job_id)
            if job.state not in TERMINAL_STATES:
                await self.outbox.add(
                    session, JobCancel(job=job.id, pipeline=job.pipeline, reason="stopped by user")
                )
            return job_info(job)

    async def list_jobs(
        self, *, pipeline: str | None, state: str | None, limit: int, cursor: str | None
    ) -> tuple[list[JobInfo], str | None]:
        async with self.db.session(write=False) as session:
            query = select(JobRow)
            if pipeline is not None:
                query = query.where(JobRow.pipeline == pipeline)
            if state is not None:
                query = query.where(JobRow.state == state)
            if cursor is not None:
                when, _, last_id = cursor.partition("_")
                try:
                    at = datetime.fromisoformat(when)
                except ValueError:
                    raise InvalidArgument(f"invalid cursor {cursor!r}") from None
                query = query.where(
                    (JobRow.created_at < at) | ((JobRow.created_at == at) & (JobRow.id < last_id))
                )
            rows = (
                await session.scalars(
                    query.order_by(JobRow.created_at.desc(), JobRow.id.desc()).limit(limit + 1)
                )
            ).all()
        page = rows[:limit]
        nxt = f"{page[-1].created_at.isoformat()}_{page[-1].id}" if len(rows) > limit else None
        return [job_info(j) for j in page], nxt

    async def inspect_job(self, job_id: str) -> JobInfo:
        async with self.db.session(write=False) as session:
            return job_info(await self._job(session, job_id))

    async def wait_job(self, job_id: str, seconds: float) -> JobInfo:
        """The job once it has ended, or as it is when ``seconds`` have passed."""
        job = await self.inspect_job(job_id)
        job_id = job.id  # a short id is looked up once
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while job.state not in TERMINAL_STATES:
                    await asyncio.sleep(0.1)
                    job = await self.inspect_job(job_id)
        return job

    # --- cron --------------------------------------------------------------------------------

    async def due_ticks(self, now: datetime) -> list[CronRow]:
        async with self.db.session(write=False) as session:
            rows = await session.scalars(
                select(CronRow)
                .join(PipelineRow, PipelineRow.name == CronRow.pipeline)
                .where(CronRow.next_tick_at <= now, PipelineRow.state == "running")
            )
            return list(rows.all())

    async def claim_tick(self, row: CronRow, now: datetime) -> bool:
        """Move the schedule past ``now``; False if another replica already did."""
        async with self.db.session() as session:
            current = await session.get(
                CronRow, (row.pipeline, row.input_name), with_for_update=True
            )
            if current is None or current.next_tick_at != row.next_tick_at:
                return False
            pipeline = await self._pipeline(session, row.pipeline)
            cron = next(c for c in self._spec(pipeline).cron_inputs() if c.name == row.input_name)
            # Ticks missed while nothing ran are not replayed: one tick, then the next future one.
            current.next_tick_at = cron.next_tick(max(now, row.next_tick_at))
            return True

    # --- helpers -----------------------------------------------------------------------------

    def _schedule_crons(self, session: AsyncSession, spec: PipelineSpec, now: datetime) -> None:
        for cron in spec.cron_inputs():
            session.add(
                CronRow(
                    pipeline=spec.name,
                    input_name=cron.name,
                    repo=cron_repo_name(spec.name, cron.name),
                    spec=cron.spec,
                    overwrite=cron.overwrite,
                    next_tick_at=cron.next_tick(now),
                )
            )

    async def _check_graph(self, session: AsyncSession, spec: PipelineSpec) -> None:
        graph = {
            p.name: [b.repo for b in input_branches(self._spec(p))]
            for p in await self._all_pipelines(session)
        }
        graph[spec.pipeline.name] = [b.repo for b in input_branches(spec)]
        cycle = find_cycle(graph)
        if cycle:
            raise InvalidArgument(f"input: pipelines would form a cycle: {' -> '.join(cycle)}")

    async def _check_inputs(self, spec: PipelineSpec) -> None:
        for pfs in spec.pfs_inputs():
            if pfs.repo == spec.pipeline.name:
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
        active = await session.scalars(
            select(JobRow).where(JobRow.pipeline == pipeline, JobRow.state.not_in(TERMINAL_STATES))
        )
        for job in active:
            await self.outbox.add(session, JobCancel(job=job.id, pipeline=pipeline, reason=reason))

    async def _pipeline(
        self, session: AsyncSession, name: str, *, lock: bool = False
    ) -> PipelineRow:
        row = await session.get(PipelineRow, name, with_for_update=lock or None)
        if row is None:
            raise NotFound(f"pipeline {name!r} not found")
        return row

    async def _all_pipelines(self, session: AsyncSession) -> list[PipelineRow]:
        return list((await session.scalars(select(PipelineRow).order_by(PipelineRow.name))).all())

    async def _job(self, session: AsyncSession, job_id: str) -> JobRow:
        if shortid.is_prefix(job_id, JOB_ID_LENGTH):
            job_id = await shortid.expand(session, JobRow.id, job_id, kind="job") or job_id
        job = await session.get(JobRow, job_id)
        if job is None:
            raise NotFound(f"job {job_id!r} not found")
        return job

    @staticmethod
    def _spec(row: PipelineRow) -> PipelineSpec:
        return PipelineSpec.model_validate(row.spec)


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


async def _newest_jobs(session: AsyncSession) -> dict[str, JobRow]:
    """Each pipeline's newest job, in one query rather than one per pipeline."""
    ranked = select(
        JobRow.id,
        func.row_number()
        .over(partition_by=JobRow.pipeline, order_by=JobRow.created_at.desc())
        .label("rank"),
    ).subquery()
    jobs = await session.scalars(
        select(JobRow).join(ranked, JobRow.id == ranked.c.id).where(ranked.c.rank == 1)
    )
    return {job.pipeline: job for job in jobs}
