"""Fixtures for the event tests: the real Kafka broker, buses of both kinds, a scratch database.

Each test gets topics of its own (``t.<random>``), so tests never see each other's records on
the session's broker.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import MetaData

from tests.backing.postgres import PostgresServer
from tests.events.helpers import Buses, effects_table
from tusk.db import Database
from tusk.events.consumer import processed_events_table
from tusk.events.kafka import KafkaBus
from tusk.events.memory import MemoryBus


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.kafka)])
async def buses(request: pytest.FixtureRequest) -> AsyncIterator[Buses]:
    """A factory of buses of one kind that share one log (one broker, or one MemoryBus)."""
    if request.param == "memory":
        memory = MemoryBus(partitions=3)
        buses = Buses(make=lambda: memory, kind="memory")
    else:
        bootstrap = request.getfixturevalue("kafka").bootstrap
        buses = Buses(make=lambda: KafkaBus(bootstrap, partitions=3, topics=()), kind="kafka")
    yield buses
    await buses.close()


@pytest.fixture
def topic() -> str:
    return f"t.{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def scratch_db(tmp_path: Path) -> AsyncIterator[tuple[Database, MetaData]]:
    """A SQLite database with a processed-events table and an effects table."""
    metadata = MetaData()
    processed_events_table("test", metadata)
    effects_table(metadata)
    db = Database.from_url(f"sqlite+aiosqlite:///{tmp_path / 'events.db'}")
    async with db.engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    yield db, metadata
    await db.dispose()


@pytest.fixture
async def pg_database(postgres: PostgresServer) -> AsyncIterator[str]:
    """The URL of a new, empty database on the session's PostgreSQL server."""
    import asyncpg  # type: ignore[import-untyped]

    name = f"events_{uuid.uuid4().hex[:12]}"
    admin_url = postgres.url.replace("postgresql+asyncpg://", "postgresql://", 1)
    connection = await asyncpg.connect(admin_url)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
        yield postgres.url.rsplit("/", 1)[0] + f"/{name}"
        await connection.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await connection.close()
