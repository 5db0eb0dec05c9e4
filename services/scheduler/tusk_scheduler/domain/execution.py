"""Executing one job: ``created → starting → running → finishing → success | failure | killed``.

Every step is written so that doing it again after a crash is harmless, because that is how
a restarted scheduler resumes: it runs the step of the state the job row is in. The steps are
the phases' modules: :mod:`.starting` (open the commits, plan, record the start),
:mod:`.running` (adopt or start the shards, collect results, start lost shards again) and
:mod:`.ending` (finish or fail). Each returns what the next needs; this module only loops,
deciding from the exception a step raised whether to retry, fail the job or leave it.
"""

from __future__ import annotations

import asyncio

import structlog

from tusk.errors import TuskError
from tusk_scheduler.domain import ending, running, starting
from tusk_scheduler.domain.job import (
    TRANSIENT_ERRORS,
    Cancel,
    Deps,
    JobFailure,
    JobView,
    Scope,
    Stop,
)
from tusk_scheduler.tables import CREATED, FINAL_STATES, FINISHING, RUNNING, STARTING

__all__ = ["TRANSIENT_ERRORS", "Deps", "JobExecution", "JobFailure"]

MIN_BACKOFF, MAX_BACKOFF = 0.5, 30.0


class JobExecution:
    def __init__(self, deps: Deps, job: str, stopping: asyncio.Event) -> None:
        self.deps = deps
        self.job = job
        self._scope = Scope(deps, job, stopping)

    def poke(self) -> None:
        """Look at the job's row again soon (e.g. a cancel request arrived)."""
        self._scope.poked.set()

    async def run(self) -> None:
        """Drive the job to a final state; return early only when the scheduler stops."""
        x = self._scope
        backoff = MIN_BACKOFF
        failure: str | None = None
        with structlog.contextvars.bound_contextvars(job=self.job):
            while not x.stopping.is_set():
                try:
                    job = await x.load()
                    if job.state in FINAL_STATES:
                        return
                    if failure is not None:
                        await ending.fail(x, job, failure)
                    elif job.cancel_reason is not None and job.state != FINISHING:
                        # (Finishing is short, and may have finished the output commit.)
                        await ending.fail(x, job, f"killed: {job.cancel_reason}", killed=True)
                    else:
                        await self._step(job)
                    backoff = MIN_BACKOFF
                    continue
                except Stop:
                    return
                except Cancel:
                    continue  # the next turn sees the cancel request on the row
                except JobFailure as e:
                    if failure is None:
                        failure = e.reason
                        continue
                    x.log.error("failing the job failed", error=e.reason)
                except TRANSIENT_ERRORS as e:
                    x.log.warning("job step failed; retrying", error=str(e), retry_in=backoff)
                except TuskError as e:  # permanent: a repo or commit gone, a request refused
                    if failure is None:
                        failure = e.message
                        continue
                    x.log.error("failing the job failed", error=e.message)
                except Exception as e:
                    x.log.exception("job step failed unexpectedly")
                    if failure is None:
                        failure = f"scheduler error: {e!r} (see the scheduler's log)"
                        continue
                await x.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)

    async def _step(self, job: JobView) -> None:
        x = self._scope
        started: starting.Started | None = None
        if job.state == CREATED:
            job = await starting.mark_starting(x, job)
        if job.state == STARTING:
            started = await starting.start(x, job)
            if started is not None:  # recorded: running goes straight on
                job = started.job
        if job.state == RUNNING:
            await running.run(x, job, started)
        elif job.state == FINISHING:
            await ending.finish(x, job)
