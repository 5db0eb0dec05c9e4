"""Several services share one SQLite file in the embedded mode, each with its own engine."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import text

from tusk.db import Database


async def test_writers_on_two_engines_wait_for_each_other(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    first, second = Database.from_url(url), Database.from_url(url)
    try:
        async with first.session() as session:
            await session.execute(text("CREATE TABLE counter (n INTEGER PRIMARY KEY)"))

        async def bump(db: Database) -> None:
            # Read, then write what was read: the pattern that fails with "database is
            # locked" when a deferred transaction has to upgrade to a writer.
            async with db.session() as session:
                top = await session.scalar(text("SELECT coalesce(max(n), 0) FROM counter"))
                await asyncio.sleep(0)
                await session.execute(text("INSERT INTO counter VALUES (:n)"), {"n": top + 1})

        await asyncio.gather(*(bump(first if i % 2 else second) for i in range(40)))
        async with first.session(write=False) as session:
            assert await session.scalar(text("SELECT count(*) FROM counter")) == 40
            assert await session.scalar(text("SELECT max(n) FROM counter")) == 40
    finally:
        await first.dispose()
        await second.dispose()
