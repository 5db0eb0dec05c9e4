"""One Alembic environment for every service's tables, on PostgreSQL and SQLite alike."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

import tusk_repo.tables  # noqa: F401  (registers the repo service's tables)
import tusk_scheduler.tables  # noqa: F401  (the scheduler's)
import tusk_trigger.tables  # noqa: F401  (the trigger service's)
from tusk.db import Base, UTCDateTime, create_engine

config = context.config
target_metadata = Base.metadata
# Any 64-bit number, the same in every process: serialises services migrating at once.
_ADVISORY_LOCK = 0x7475736B


def render_item(kind: str, item: object, _autogen_context: object) -> str | bool:
    # Our column types are plain SQL types underneath; render them so, with no import needed.
    if kind == "type" and isinstance(item, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run_migrations(connection: Connection) -> None:
    is_postgres = connection.dialect.name == "postgresql"
    if is_postgres:
        connection.execute(text(f"SELECT pg_advisory_lock({_ADVISORY_LOCK})"))
    try:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=not is_postgres,  # SQLite alters tables by copying them
            compare_type=True,
            render_item=render_item,
        )
        with context.begin_transaction():
            context.run_migrations()
    finally:
        if is_postgres:
            connection.execute(text(f"SELECT pg_advisory_unlock({_ADVISORY_LOCK})"))
            connection.commit()


def database_url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if not url:  # run from the alembic command line: the services' own setting
        from tusk.settings import CommonSettings

        url = CommonSettings().resolved_database_url
    return url


async def run_async() -> None:
    engine = create_engine(database_url())
    async with engine.connect() as connection:
        await connection.run_sync(run_migrations)
    await engine.dispose()


if context.is_offline_mode():
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(run_async())
