"""The one Alembic environment upgrades an empty database on both dialects, and the models
match the migrations (``alembic check``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config

from tests.conftest import fresh_postgres_database
from tusk.db import migrate_sync, migrations_dir


@pytest.fixture(params=["sqlite", "postgresql"])
async def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    return await fresh_postgres_database(request.getfixturevalue("postgres"))


def _config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("sqlalchemy.url", url)
    return config


async def test_upgrade_then_check_is_clean(empty_database: str) -> None:
    import asyncio

    await asyncio.to_thread(migrate_sync, empty_database)
    await asyncio.to_thread(command.check, _config(empty_database))  # raises if models drifted
    await asyncio.to_thread(migrate_sync, empty_database)  # a second run is a no-op


async def test_downgrade_to_base_and_up_again(empty_database: str) -> None:
    import asyncio

    await asyncio.to_thread(migrate_sync, empty_database)
    await asyncio.to_thread(command.downgrade, _config(empty_database), "base")
    await asyncio.to_thread(migrate_sync, empty_database)


async def test_tree_nodes_get_their_packed_references_on_upgrade(empty_database: str) -> None:
    """Nodes stored before 0008 are filled in by it, exactly as a node saved now would be; on
    PostgreSQL the node columns are then stored without compression."""
    import asyncio

    import sqlalchemy as sa

    from tusk.db import create_engine
    from tusk_repo import trees

    await asyncio.to_thread(migrate_sync, empty_database, "0007")
    files = [(f"f{i}", trees.FILE, f"{i:064x}", 1, 1) for i in range(3)]
    subdir = ("sub", trees.DIR, "ab" * 32, 3, 3)
    nodes = [trees.encode_rows(files), trees.encode_rows([*files, subdir]), trees.EMPTY_NODE]
    engine = create_engine(empty_database)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                sa.text("INSERT INTO repo_trees (hash, entries) VALUES (:h, :e)"),
                [{"h": trees.node_hash(blob), "e": blob} for blob in nodes],
            )
        await asyncio.to_thread(migrate_sync, empty_database)
        async with engine.connect() as connection:
            stored = {
                digest: (subdirs, keys)
                for digest, subdirs, keys in await connection.execute(
                    sa.text("SELECT hash, subdirs, file_keys FROM repo_trees")
                )
            }
            if connection.dialect.name == "postgresql":
                storage = set(
                    await connection.scalars(
                        sa.text(
                            "SELECT attstorage::text FROM pg_attribute WHERE attrelid = "
                            "'repo_trees'::regclass AND attname IN "
                            "('entries', 'subdirs', 'file_keys')"
                        )
                    )
                )
                assert storage == {"e"}
    finally:
        await engine.dispose()
    assert stored == {trees.node_hash(blob): trees.node_refs(blob) for blob in nodes}
    assert stored[trees.node_hash(nodes[1])][0] == bytes.fromhex("ab" * 32)
