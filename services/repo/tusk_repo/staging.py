"""Clearing a finished commit's staged rows after its finish, not within it.

Deleting 100,000 staged rows inside the finishing transaction made it (and, on SQLite, every
other writer waiting for it) last a tenth of a second or more longer. Those rows are dead
once the commit is finished: staged rows are only read for an open commit, keyed by its id,
and a finished commit never opens again. So the finish leaves them, and this deletes them
afterwards in short transactions of ``batch`` rows. A crash in between leaves rows that
nothing reads; the next sweep here, or garbage collection, deletes them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

import structlog

from tusk.db import Database
from tusk_repo import store

log = structlog.get_logger()


class StagedCleaner:
    def __init__(self, db: Database, batch: int = 5000) -> None:
        self.db = db
        self.batch = batch
        self._tasks: set[asyncio.Task[None]] = set()

    def clear_later(self, commit_id: str) -> None:
        """Delete the finished commit's staged rows in the background."""
        self._spawn(self.clear(commit_id), f"clear-staged-{commit_id}")

    def sweep_later(self) -> None:
        """Delete, in the background, the staged rows that finished commits left behind."""
        self._spawn(self.sweep(), "sweep-staged")

    async def clear(self, commit_id: str) -> None:
        while True:
            async with self.db.session() as session:
                # Garbage collection deletes leftovers too: one at a time, or on PostgreSQL
                # the two could lock the same rows in different orders.
                await store.hold_off_collection(session)
                deleted = await store.clear_staged(session, commit_id, limit=self.batch)
            if deleted < self.batch:
                return

    async def sweep(self) -> None:
        async with self.db.session(write=False) as session:
            leftovers = await store.finished_with_staged(session)
        for commit_id in leftovers:
            await self.clear(commit_id)
        if leftovers:
            log.info("staged rows of finished commits cleared", commits=len(leftovers))

    async def idle(self) -> None:
        """Wait until every clearing started so far has ended (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()  # what is left is swept at the next start or collection
        with contextlib.suppress(asyncio.CancelledError):
            await self.idle()

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(self._logged(work), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _logged(work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception:  # a failure leaves dead rows, swept later; never a failed request
            log.exception("clearing staged rows failed; they are swept later")
