"""``Leadership``: one scheduler executes jobs at a time.

Two schedulers on one database would both execute the same jobs: a rolling update runs the
old and the new pod side by side for a while, and a chart may ask for more replicas. So the
dispatcher only runs in the process that holds a PostgreSQL advisory lock, taken on a
connection of its own and held for as long as that connection lives. The other schedulers
stand by: they record events and answer the API, and try for the lock every
``retry_interval`` seconds. When the leader stops, or its process or connection dies,
PostgreSQL releases the lock and a standby takes over, adopting the jobs in flight as after a
restart (see :mod:`tusk_scheduler.background.dispatcher`).

The leader checks its connection every ``check_interval`` seconds; when it is gone (the lock
with it) it stops dispatching at once and goes back to trying for the lock. A standby that
takes the lock over waits two check intervals before it dispatches, so that a leader which
lost its connection (rather than stopped) has noticed and stopped first. A process that gets
the lock at its first try starts at once: nobody held it.

SQLite is one process's database (the embedded mode): that process leads, without a lock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from tusk.concurrency import wait_event
from tusk.db import Database
from tusk_scheduler import store

log = structlog.get_logger()


class Leadership:
    def __init__(
        self,
        db: Database,
        *,
        lead: Callable[[], None],
        step_down: Callable[[], Awaitable[None]],
        retry_interval: float = 2.0,
        check_interval: float = 2.0,
    ) -> None:
        """``lead`` starts the work only the leader does; ``step_down`` stops it."""
        self.db = db
        self.lead = lead
        self.step_down = step_down
        self.retry_interval = retry_interval
        self.check_interval = check_interval
        self.leading = False
        self._stopped = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._stopped.clear()
            self._task = asyncio.create_task(self._run(), name="scheduler leadership")

    async def stop(self) -> None:
        """Step down (the work stops, then the lock is released)."""
        self._stopped.set()
        task, self._task = self._task, None
        if task is not None:
            await task

    async def _run(self) -> None:
        if self.db.is_sqlite:
            await self._hold(None)
            return
        announced = False
        waited = False  # another process held the lock: taking it over is a hand-over
        while not self._stopped.is_set():
            connection = await self._try_lock()
            if connection is not None:
                try:
                    if waited:
                        await wait_event(self._stopped, 2 * self.check_interval)
                    if not self._stopped.is_set():
                        await self._hold(connection)
                finally:
                    # Closed for good, not returned to the pool: that ends the database
                    # session, and with it the lock.
                    with contextlib.suppress(Exception):
                        await connection.invalidate()
                    with contextlib.suppress(Exception):
                        await connection.close()
                announced = waited = False
            else:
                waited = True
                if not announced:
                    log.info("standing by: another scheduler executes the jobs")
                    announced = True
            await wait_event(self._stopped, self.retry_interval)

    async def _try_lock(self) -> AsyncConnection | None:
        """A connection holding the lock, or None (another process has it, or the database
        did not answer)."""
        try:
            connection = await self.db.engine.connect()
        except Exception as e:
            log.warning("leadership: cannot reach the database", error=str(e))
            return None
        try:
            got = await store.try_leader_lock(connection)
        except Exception as e:
            log.warning("leadership: cannot take the lock", error=str(e))
            got = False
        if not got:
            with contextlib.suppress(Exception):
                await connection.close()
            return None
        return connection

    async def _hold(self, connection: AsyncConnection | None) -> None:
        """Lead until stopped or, with a lock, until its connection is lost."""
        self.leading = True
        log.info("leading: this scheduler executes the jobs")
        self.lead()
        try:
            while not self._stopped.is_set():
                await wait_event(self._stopped, self.check_interval)
                if connection is not None and not self._stopped.is_set():
                    try:
                        await store.check_connection(connection)
                    except Exception as e:
                        log.error(
                            "leadership lost: the connection holding the lock failed; "
                            "stopping job execution",
                            error=str(e),
                        )
                        return
        finally:
            self.leading = False
            await self.step_down()
