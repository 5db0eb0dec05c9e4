"""The async SQL engine (PostgreSQL through asyncpg, SQLite through aiosqlite) and sessions.

Services only flush; the unit of work that opened the session commits or rolls back. SQLite
allows one writer at a time, so in SQLite mode write transactions queue on a lock shared by
every :class:`Database` of the same file in the event loop (the embedded services each have
one), rather than meeting in SQLite's busy handler, which sleeps 1 to 100 ms between tries.
"""

from __future__ import annotations

import asyncio
import sqlite3
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, nullcontext
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import aiosqlite
from aiosqlite.context import contextmanager as aiosqlite_result
from sqlalchemy import DateTime, Dialect, MetaData, TypeDecorator, event
from sqlalchemy.dialects.sqlite.aiosqlite import SQLiteDialect_aiosqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase

from tusk.errors import Unavailable

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base for every service's tables; each service prefixes its table names."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class _SQLiteCursor(aiosqlite.Cursor):
    async def close(self) -> None:
        self._cursor.close()  # resets a finished statement: no I/O, no trip to the thread


class _SQLiteConnection(aiosqlite.Connection):
    """aiosqlite's connection, opening and closing cursors on the caller's thread.

    aiosqlite runs each call on the connection's own thread and wakes the event loop with
    its result, a trip that costs more than a small indexed query (0.1-0.2 ms on a 2-core
    VM). SQLAlchemy makes four per SELECT (open a cursor, execute, fetch, close) and three
    per BEGIN. Opening and closing a cursor touch no file, and a session uses its connection
    for one call at a time, so those two run here: two trips per SELECT, one per BEGIN. The
    rollback the pool sends a connection handed back with no transaction open is skipped."""

    @aiosqlite_result
    async def cursor(self) -> aiosqlite.Cursor:
        return _SQLiteCursor(self, self._conn.cursor())

    async def rollback(self) -> None:
        if self._conn.in_transaction:
            await super().rollback()


def _sqlite_connector(url: URL) -> Callable[[], _SQLiteConnection]:
    """What SQLAlchemy's aiosqlite dialect would connect with, as a :class:`_SQLiteConnection`
    (for ``create_async_engine(async_creator=…)``)."""
    args, options = SQLiteDialect_aiosqlite().create_connect_args(url)
    options = {**options, "timeout": 30}

    def connect() -> _SQLiteConnection:
        connection = _SQLiteConnection(partial(sqlite3.connect, *args, **options), 64)
        connection._thread.daemon = True  # as the dialect does: never holds up the exit
        return connection

    return connect


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs.setdefault("async_creator", _sqlite_connector(parsed))
        else:
            kwargs.setdefault("connect_args", {"timeout": 30})
        engine = create_async_engine(url, **kwargs)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # We emit BEGIN ourselves (below), so the driver must not.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _sqlite_begin(connection: Any) -> None:
            # A deferred transaction that reads and then writes cannot wait for another
            # process's writer (SQLite answers "database is locked" at once); IMMEDIATE takes
            # the write lock up front and waits for it (busy_timeout). Several embedded
            # services share one file, each with its own engine.
            write = connection.get_execution_options().get("tusk_write", False)
            connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(url, **kwargs)


class Database:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        self._sessions = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
        self._write_sessions = async_sessionmaker(
            engine.execution_options(tusk_write=True), expire_on_commit=False, autoflush=False
        )
        self._file = str(engine.url.database) if self.is_sqlite else None

    @classmethod
    def from_url(cls, url: str) -> Database:
        return cls(create_engine(url))

    @asynccontextmanager
    async def session(self, *, write: bool = True) -> AsyncIterator[AsyncSession]:
        """A session whose transaction commits when the block ends and rolls back on error."""
        lock = _sqlite_write_lock(self._file) if (write and self._file) else nullcontext()
        async with lock:
            try:
                sessions = self._write_sessions if write else self._sessions
                async with sessions() as session, session.begin():
                    yield session
            except (OperationalError, DBAPIError) as e:
                if e.connection_invalidated or isinstance(e, OperationalError):
                    raise Unavailable(f"database error: {e.orig}") from e
                raise

    async def dispose(self) -> None:
        await self.engine.dispose()


_sqlite_write_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]]
_sqlite_write_locks = weakref.WeakKeyDictionary()


def _sqlite_write_lock(file: str) -> asyncio.Lock:
    """The write lock of a SQLite file in the running event loop (a lock serves one loop)."""
    locks = _sqlite_write_locks.setdefault(asyncio.get_running_loop(), {})
    return locks.setdefault(file, asyncio.Lock())


def insert_for(session: AsyncSession, table: Any) -> Any:
    """A dialect ``INSERT`` with ``on_conflict_do_nothing`` / ``on_conflict_do_update``."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


def migrations_dir() -> Path:
    """The Alembic environment: inside the installed package, or at the checkout's root."""
    import tusk

    here = Path(tusk.__file__).resolve().parent
    for candidate in (here / "migrations", here.parents[1] / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise RuntimeError("the migrations directory is missing from this installation")


def migrate_sync(url: str, revision: str = "head") -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(config, revision)


async def migrate(url: str, revision: str = "head") -> None:
    """Upgrade the schema; Alembic runs its own event loop, so it gets a thread of its own."""
    await asyncio.to_thread(migrate_sync, url, revision)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC (SQLite drops the zone on the way back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware UTC datetime")
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


async def insert_if_absent(session: AsyncSession, table: Any, values: dict[str, Any]) -> bool:
    """Insert a row unless it clashes with a unique key; True when it was inserted.

    ``ON CONFLICT DO NOTHING`` instead of catching IntegrityError: on PostgreSQL a failed insert
    aborts the whole transaction, so racing creators must not fail, only learn they lost.
    """
    first_key = next(iter(table.primary_key.columns))
    stmt = insert_for(session, table).values(**values).on_conflict_do_nothing().returning(first_key)
    return (await session.execute(stmt)).first() is not None
