"""Runs an engine the way its warm-up chose: inline, one request per thread, or batched."""

from __future__ import annotations

import asyncio

from tusk_inference.domain.batching import Batcher, BatchObserver, QueueFull, Results
from tusk_inference.domain.engine import Engine
from tusk_inference.domain.tensors import Array


class Runner:
    """Shared by every version whose model file has the same content (one session each)."""

    def __init__(
        self,
        engine: Engine,
        *,
        name: str,
        max_rows: int,
        max_delay: float,
        queue_limit: int,
        observer: BatchObserver | None = None,
    ) -> None:
        self.engine = engine
        self.mode = engine.mode
        self.name = name
        self.queue_limit = queue_limit
        self._in_threads = 0
        self.batcher = (
            Batcher(
                engine.run,
                max_rows=max_rows,
                max_delay=max_delay,
                queue_limit=queue_limit,
                observer=observer,
                name=name,
            )
            if self.mode == "batch"
            else None
        )

    async def infer(self, feeds: dict[str, Array], rows: int) -> Results:
        if self.batcher is not None:
            return await self.batcher.submit(feeds, rows)
        if self.mode == "inline":
            return self.engine.run(feeds)
        if self._in_threads >= self.queue_limit:
            raise QueueFull(
                f"model {self.name!r} has {self._in_threads} requests running or waiting "
                f"(TUSK_INFERENCE_QUEUE_LIMIT); retry shortly"
            )
        self._in_threads += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(None, self.engine.run, feeds)
        finally:
            self._in_threads -= 1

    async def wait_idle(self) -> None:
        if self.batcher is not None:
            await self.batcher.wait_idle()
