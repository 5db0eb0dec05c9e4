"""Short ids: a unique prefix expands to its id; an ambiguous one lists the candidates."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tusk import shortid
from tusk.db import Database
from tusk.errors import InvalidArgument


class _Base(DeclarativeBase):
    pass


class _Thing(_Base):
    __tablename__ = "things"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)


IDS = ["abcdef0011", "abcdef0022", "abcdef1100", "0123456789", "ab%def00_1"]


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database.from_url(f"sqlite+aiosqlite:///{tmp_path / 'ids.db'}")
    async with database.engine.begin() as connection:
        await connection.run_sync(_Base.metadata.create_all)
    async with database.session() as session:
        session.add_all(_Thing(id=i) for i in IDS)
    yield database
    await database.dispose()


async def test_a_unique_prefix_expands(db: Database) -> None:
    async with db.session(write=False) as session:
        assert await shortid.expand(session, _Thing.id, "abcdef11", kind="thing") == "abcdef1100"
        assert await shortid.expand(session, _Thing.id, "01234567", kind="thing") == "0123456789"
        assert await shortid.expand(session, _Thing.id, "ffffffff", kind="thing") is None
        assert await shortid.expand(session, _Thing.id, "abcdef0", kind="thing") is None


async def test_an_ambiguous_prefix_names_the_candidates(db: Database) -> None:
    async with db.session(write=False) as session:
        with pytest.raises(InvalidArgument) as raised:
            await shortid.expand(session, _Thing.id, "abcdef00", kind="thing")
    assert "abcdef0011" in raised.value.message
    assert "abcdef0022" in raised.value.message
    assert "ambiguous" in raised.value.message


async def test_like_wildcards_are_literal(db: Database) -> None:
    async with db.session(write=False) as session:
        # '%' and '_' would match anything in a LIKE pattern; here they match themselves.
        assert await shortid.expand(session, _Thing.id, "ab%def00", kind="thing") == "ab%def00_1"


def test_only_hex_shorter_than_the_whole_is_a_prefix() -> None:
    assert shortid.is_prefix("deadbeef", 32)
    assert not shortid.is_prefix("deadbee", 32)
    assert not shortid.is_prefix("master00", 32)
    assert not shortid.is_prefix("a" * 32, 32)
