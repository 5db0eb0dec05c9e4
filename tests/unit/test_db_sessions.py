"""Sessions on a SQLite file: aiosqlite's connection with cursors opened and closed on the
event loop's thread, and the pool's rollback skipped when no transaction is open."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from tusk.db import Database, create_engine


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    # One connection, so every session below reuses the one the one before handed back.
    database = Database(
        create_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", pool_size=1, max_overflow=0)
    )
    async with database.session() as session:
        await session.execute(text("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)"))
    yield database
    await database.dispose()


async def _rows(db: Database) -> list[tuple[int, str]]:
    async with db.session(write=False) as session:
        return [tuple(r) for r in await session.execute(text("SELECT k, v FROM t ORDER BY k"))]


async def test_a_failed_session_rolls_back_and_its_connection_serves_the_next(
    db: Database,
) -> None:
    async def failing_unit_of_work() -> None:
        async with db.session() as session:
            await session.execute(text("INSERT INTO t VALUES (2, 'lost')"))
            assert [r[0] for r in await session.execute(text("SELECT k FROM t"))] == [1, 2]
            raise RuntimeError("the unit of work fails")

    async with db.session() as session:
        await session.execute(text("INSERT INTO t VALUES (1, 'kept')"))
    with pytest.raises(RuntimeError):
        await failing_unit_of_work()
    # The same connection, with no transaction left open on it: a new one begins and commits.
    async with db.session() as session:
        await session.execute(text("INSERT INTO t VALUES (3, 'kept too')"))
    assert await _rows(db) == [(1, "kept"), (3, "kept too")]


async def test_statements_in_one_session_and_sessions_side_by_side(tmp_path: Path) -> None:
    database = Database.from_url(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    try:
        async with database.session() as session:
            await session.execute(text("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)"))

        async def write(k: int) -> None:
            async with database.session() as session:
                await session.execute(text("INSERT INTO t VALUES (:k, :v)"), {"k": k, "v": str(k)})
                # A second statement after the first one's cursor was closed.
                count = (await session.execute(text("SELECT count(*) FROM t"))).scalar_one()
                assert count >= 1

        async def read() -> int:
            async with database.session(write=False) as session:
                first = (await session.execute(text("SELECT count(*) FROM t"))).scalar_one()
                second = (await session.execute(text("SELECT count(*) FROM t"))).scalar_one()
                assert first == second  # one transaction: one snapshot
                return int(first)

        _, counts = await asyncio.gather(
            asyncio.gather(*(write(k) for k in range(20))),
            asyncio.gather(*(read() for _ in range(20))),
        )
        assert all(0 <= n <= 20 for n in counts)
        assert [k for k, _ in await _rows(database)] == list(range(20))
    finally:
        await database.dispose()
