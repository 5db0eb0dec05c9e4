"""Adaptive micro-batching for models whose compute dominates a request.

Requests queue per engine; one drainer task runs a batch at a time in a worker thread, so
while a batch runs the next one gathers by itself — under light load a request runs alone,
at once; under heavy load batches grow to ``max_rows``. The drainer exits when the queue is
empty and the next request starts a new one, so an idle engine costs no task.

Holding for companions: when the last batch had several requests, the drainer waits for as
many rows as that batch had (the current concurrency, as far as it can tell), but never
longer than ``max_delay`` after the oldest request arrived (the latency cap), and never when
requests came one at a time. More than ``queue_limit`` waiting requests answer 503.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from tusk.errors import Unavailable
from tusk_inference.domain.tensors import Array

Results = dict[str, Array]


class QueueFull(Unavailable):
    code = "queue_full"


class BatchObserver(Protocol):
    def batch(self, rows: int, requests: int) -> None: ...

    def queued(self, seconds: float) -> None: ...


@dataclass(eq=False)
class _Job:
    feeds: dict[str, Array]
    rows: int  # -1: the inputs disagree on the first dimension; runs alone
    future: asyncio.Future[Results]
    enqueued: float
    key: tuple[object, ...] = field(init=False)

    def __post_init__(self) -> None:
        # Requests stack only when everything but the first dimension agrees.
        self.key = tuple((name, a.dtype.str, a.shape[1:]) for name, a in self.feeds.items())


class Batcher:
    def __init__(
        self,
        run: Callable[[dict[str, Array]], Results],
        *,
        max_rows: int,
        max_delay: float,
        queue_limit: int,
        observer: BatchObserver | None = None,
        executor: Executor | None = None,
        name: str = "model",
    ) -> None:
        self._run = run
        self.max_rows = max_rows
        self.max_delay = max_delay
        self.queue_limit = queue_limit
        self._observer = observer
        self._executor = executor
        self._name = name
        self._pending: deque[_Job] = deque()
        self._drainer: asyncio.Task[None] | None = None
        self._arrived: asyncio.Event | None = None
        self._last_rows = 1

    @property
    def waiting(self) -> int:
        return len(self._pending)

    async def submit(self, feeds: dict[str, Array], rows: int) -> Results:
        if len(self._pending) >= self.queue_limit:
            raise QueueFull(
                f"model {self._name!r} has {len(self._pending)} requests waiting "
                f"(TUSK_INFERENCE_QUEUE_LIMIT); retry shortly"
            )
        loop = asyncio.get_running_loop()
        job = _Job(feeds, rows, loop.create_future(), time.perf_counter())
        self._pending.append(job)
        if self._drainer is None:
            self._drainer = loop.create_task(self._drain(), name=f"batcher {self._name}")
        elif self._arrived is not None:
            self._arrived.set()
        # A cancelled caller (client gone) cancels its future; the drainer skips it.
        return await job.future

    async def wait_idle(self) -> None:
        """Until every queued request has its answer (graceful shutdown)."""
        while self._drainer is not None:
            await asyncio.shield(self._drainer)

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                if self.max_delay > 0 and self._last_rows > 1:
                    await self._hold()
                batch = self._take()
                if batch:
                    await self._execute(loop, batch)
        except BaseException as e:
            # Cancelled (shutdown past its drain time) or a bug: nobody may wait forever.
            error = (
                e
                if isinstance(e, Exception)
                else Unavailable("the inference service is shutting down")
            )
            while self._pending:
                _fail(self._pending.popleft(), error)
            raise
        finally:
            self._drainer = None

    async def _hold(self) -> None:
        wanted = min(self._last_rows, self.max_rows)
        deadline = self._pending[0].enqueued + self.max_delay
        while self._queued_rows() < wanted:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            self._arrived = asyncio.Event()
            try:
                async with asyncio.timeout(remaining):
                    await self._arrived.wait()
            except TimeoutError:
                return
            finally:
                self._arrived = None

    def _queued_rows(self) -> int:
        return sum(max(job.rows, 1) for job in self._pending)

    def _take(self) -> list[_Job]:
        """The longest run of compatible requests at the head of the queue, up to max_rows."""
        batch: list[_Job] = []
        rows = 0
        while self._pending:
            job = self._pending[0]
            if job.future.done():  # its caller went away
                self._pending.popleft()
                continue
            if batch and (
                job.rows < 0
                or batch[0].rows < 0
                or job.key != batch[0].key
                or rows + job.rows > self.max_rows
            ):
                break
            self._pending.popleft()
            batch.append(job)
            rows += max(job.rows, 1)
        return batch

    async def _execute(self, loop: asyncio.AbstractEventLoop, batch: list[_Job]) -> None:
        started = time.perf_counter()
        rows = sum(max(job.rows, 1) for job in batch)
        if self._observer is not None:
            self._observer.batch(rows, len(batch))
            for job in batch:
                self._observer.queued(started - job.enqueued)
        self._last_rows = rows
        if len(batch) == 1:
            feeds = batch[0].feeds
        else:
            feeds = {
                name: np.concatenate([job.feeds[name] for job in batch]) for name in batch[0].feeds
            }
        try:
            results = await loop.run_in_executor(self._executor, self._run, feeds)
        except asyncio.CancelledError:
            for job in batch:
                _fail(job, Unavailable("the inference service is shutting down"))
            raise
        except Exception as e:
            if len(batch) == 1:
                _fail(batch[0], e)
                return
            # One request's values may break the whole batch: run each alone, so that only
            # the guilty one fails.
            for job in batch:
                try:
                    _succeed(job, await loop.run_in_executor(self._executor, self._run, job.feeds))
                except Exception as alone:
                    _fail(job, alone)
            return
        if len(batch) == 1:
            _succeed(batch[0], results)
            return
        offset = 0
        for job in batch:
            end = offset + job.rows
            _succeed(job, {name: r[offset:end] for name, r in results.items()})
            offset = end


def _succeed(job: _Job, results: Results) -> None:
    if not job.future.done():
        job.future.set_result(results)


def _fail(job: _Job, error: BaseException) -> None:
    if not job.future.done():
        job.future.set_exception(error)
