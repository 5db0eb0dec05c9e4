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
