"""One scheduler executes jobs at a time: the leader holds a PostgreSQL advisory lock, the
others stand by and take over when it goes. Against the session's real PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest

from tests.backing.postgres import PostgresServer
from tests.conftest import fresh_postgres_database
from tests.scheduler.conftest import scheduler_settings
from tusk.db import Database
from tusk.events.memory import MemoryBus
from tusk_scheduler.background.leadership import Leadership
from tusk_scheduler.context import build_context

pytestmark = pytest.mark.postgres


@pytest.fixture
async def database_url(postgres: PostgresServer) -> str:
    return await fresh_postgres_database(postgres)


@pytest.fixture
async def databases(database_url: str) -> AsyncIterator[list[Database]]:
    """Two processes' worth of connections to one database."""
    dbs = [Database.from_url(database_url), Database.from_url(database_url)]
    yield dbs
    for db in dbs:
        await db.dispose()


async def eventually(check: Callable[[], bool], within: float = 10) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def candidate(db: Database, name: str, log: list[str]) -> Leadership:
    async def step_down() -> None:
        log.append(f"{name} steps down")

    return Leadership(
        db,
        lead=lambda: log.append(f"{name} leads"),
        step_down=step_down,
        retry_interval=0.05,
        check_interval=0.05,
    )


async def test_one_leads_and_a_standby_takes_over_when_it_stops(
    databases: list[Database],
) -> None:
    log: list[str] = []
    first, second = (candidate(db, n, log) for db, n in zip(databases, "ab", strict=True))
    first.start()
    await eventually(lambda: first.leading)
    second.start()
    await asyncio.sleep(0.5)  # ten tries
    assert not second.leading
    assert log == ["a leads"]

    await first.stop()
    await eventually(lambda: second.leading)
    assert log == ["a leads", "a steps down", "b leads"]
    await second.stop()
    assert log[-1] == "b steps down"


async def test_a_leader_that_loses_its_connection_steps_down(
    databases: list[Database], database_url: str
) -> None:
    log: list[str] = []
    first, second = (candidate(db, n, log) for db, n in zip(databases, "ab", strict=True))
    first.start()
    await eventually(lambda: first.leading)
    second.start()
    await asyncio.sleep(0.3)  # standing by
    assert not second.leading

    # The leader's connection dies (a network cut, a database restart): so does its lock.
    admin = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks "
            "WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid() "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
    finally:
        await admin.close()
    assert killed == 1
    await eventually(lambda: second.leading)
    assert log[:3] == ["a leads", "a steps down", "b leads"]
    assert not first.leading
    await second.stop()
    await first.stop()


async def test_only_the_leading_scheduler_executes_jobs(tmp_path: Path, database_url: str) -> None:
    contexts = []
    async with contextlib.AsyncExitStack() as stack:
        for name in ("one", "two"):
            settings = scheduler_settings(
                tmp_path / name,
                "http://127.0.0.1:9",
                database_url=database_url,
                TUSK_SCHEDULER_WARM_WORKERS=0,
            )
            contexts.append(
                await stack.enter_async_context(build_context(settings, bus=MemoryBus()))
            )
        await eventually(lambda: any(c.leadership.leading for c in contexts))
        await asyncio.sleep(0.5)
        assert sorted(c.leadership.leading for c in contexts) == [False, True]
        assert sorted(c.dispatcher.dispatching for c in contexts) == [False, True]
