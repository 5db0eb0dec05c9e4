"""The dispatcher: decides which jobs execute now, each in a task of its own.

Per pipeline, jobs run one at a time in creation order (the output branch has one open commit,
and a job's skipping relies on what the previous one recorded); across pipelines, up to
``max_running`` jobs at once. A job that was cancelled while queued is ended at once, without
waiting for its turn.

The dispatcher looks at the jobs table whenever it is woken (a job was recorded or a cancel
requested, a job finished) and every few seconds anyway. It runs in one scheduler at a time
(see :mod:`tusk_scheduler.background.leadership`); its first look once started picks up the jobs a
previous process left unfinished: that is how jobs resume after a restart or a hand-over.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from tusk.concurrency import wait_event
from tusk_scheduler import store
from tusk_scheduler.domain.execution import TRANSIENT_ERRORS, Deps, JobExecution
from tusk_scheduler.store import ActiveJob
from tusk_scheduler.tables import CREATED

log = structlog.get_logger()


class Dispatcher:
    def __init__(self, deps: Deps, *, max_running: int, poll_interval: float = 5.0) -> None:
        self.deps = deps
        self.max_running = max_running
        self.poll_interval = poll_interval
        self._executions: dict[str, tuple[asyncio.Task[None], JobExecution]] = {}
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> list[str]:
        """The jobs executing in this process now."""
        return list(self._executions)

    @property
    def dispatching(self) -> bool:
        """Whether this dispatcher is started (in the scheduler that leads)."""
        return self._task is not None

    def wake(self) -> None:
        """Look at the jobs soon (safe to call from any coroutine or commit hook)."""
        self._wakeup.set()

    def start(self) -> None:
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._loop(), name="scheduler dispatcher")

    async def stop(self, grace: float = 10.0) -> None:
        """Stop starting jobs and let the executing ones put down their work (up to ``grace``
        seconds; then they are cancelled). Workers keep running, to be adopted later."""
        self._stopping.set()
        self._wakeup.set()
        task, self._task = self._task, None
        if task is not None:
            await task
        tasks = [t for t, _ in self._executions.values()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for t in pending:
                t.cancel()
            for t in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            if pending:
                log.warning("job executions cancelled at shutdown", jobs=len(pending))

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wakeup.clear()  # before looking: a wake-up during the pass looks again
            try:
                await self.dispatch()
            except TRANSIENT_ERRORS as e:
                log.warning("dispatcher: cannot read the jobs; retrying", error=str(e))
            except Exception:  # the dispatcher must outlive any failure
                log.exception("dispatcher: pass failed")
            await wait_event(self._wakeup, self.poll_interval)

    async def dispatch(self) -> None:
        """One look at the unfinished jobs: start those whose turn it is."""
        async with self.deps.db.session(write=False) as session:
            jobs = await store.active_jobs(session)
        heads: dict[str, ActiveJob] = {}
        eligible: list[ActiveJob] = []
        for job in jobs:
            if job.pipeline not in heads:
                heads[job.pipeline] = job
                eligible.append(job)
            elif job.state == CREATED and job.cancel_reason is not None:
                eligible.append(job)  # cancelled while queued: ending it cannot wait its turn
        for job in eligible:
            if self._stopping.is_set():
                return
            current = self._executions.get(job.id)
            if current is not None:
                current[1].poke()  # e.g. a cancel request may have arrived
                continue
            queued_cancel = job.cancel_reason is not None and job.state == CREATED
            if len(self._executions) >= self.max_running and not queued_cancel:
                continue
            self._launch(job)

    def _launch(self, job: ActiveJob) -> None:
        execution = JobExecution(self.deps, job.id, self._stopping)
        task = asyncio.create_task(execution.run(), name=f"job {job.id}")
        self._executions[job.id] = (task, execution)
        task.add_done_callback(lambda t: self._done(job.id, t))
        log.info("job execution started", job=job.id, pipeline=job.pipeline, state=job.state)

    def _done(self, job: str, task: asyncio.Task[None]) -> None:
        self._executions.pop(job, None)
        if not task.cancelled() and task.exception() is not None:
            # Not woken: the next periodic pass tries again, so a crash cannot spin.
            log.error("job execution crashed", job=job, error=repr(task.exception()))
        elif not self._stopping.is_set():
            self.wake()  # the pipeline's next job may go now
