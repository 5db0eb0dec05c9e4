"""Backend failures, provoked for real, map to the answer a client can act on."""

from __future__ import annotations

import errno
import socket
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import create_async_engine

from tusk.errors import InsufficientStorage, InvalidArgument, Unavailable
from tusk.outages import translate_backend_error


async def test_a_sqlite_lock_timeout_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN EXCLUSIVE")  # another process holding the write lock
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}", connect_args={"timeout": 0.1})
    try:
        with pytest.raises(OperationalError) as raised:
            async with engine.begin() as connection:
                await connection.execute(text("INSERT INTO t VALUES (1)"))
        translated = translate_backend_error(raised.value)
        assert isinstance(translated, Unavailable)
        assert "locked" in translated.message
        assert translated.retry_after >= 1
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        await engine.dispose()


async def test_an_unreachable_postgresql_is_unavailable() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    engine = create_async_engine(f"postgresql+asyncpg://tusk@127.0.0.1:{port}/tusk")
    try:
        with pytest.raises((OSError, DBAPIError)) as raised:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        assert isinstance(translate_backend_error(raised.value), Unavailable)
    finally:
        await engine.dispose()


def test_a_full_disk_and_unstorable_values() -> None:
    full = translate_backend_error(OSError(errno.ENOSPC, "No space left on device"))
    assert isinstance(full, InsufficientStorage)
    assert full.status_code == 507
    assert translate_backend_error(ValueError("a bug")) is None  # bugs stay 500s


@pytest.mark.postgres
async def test_a_nul_in_text_on_postgresql_is_invalid(postgres: object) -> None:
    url = postgres.url  # type: ignore[attr-defined]
    engine = create_async_engine(url)
    try:
        with pytest.raises(DBAPIError) as raised:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT CAST(:v AS text)"), {"v": "a\x00b"})
        assert isinstance(translate_backend_error(raised.value), InvalidArgument)
    finally:
        await engine.dispose()
