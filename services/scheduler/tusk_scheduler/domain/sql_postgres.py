"""SQL egress into PostgreSQL (``postgresql://``, ``postgres://``) with asyncpg: each file's
rows stream into ``COPY … (FORMAT csv)``, so PostgreSQL parses the values into the columns'
types itself."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from tusk.errors import Unavailable
from tusk_scheduler.domain.rows import copy_csv
from tusk_scheduler.domain.sql_loader import Batch, EgressRefused, Table

CONNECT_TIMEOUT = 30.0  # seconds

# Worth trying again: the server is not there, going away, or asked us to wait.
_TRANSIENT_STATES = ("08", "53", "57P", "40001", "40P01", "55P03")


async def connect(url: str, password: str) -> PostgresLoader:
    try:
        connection = await asyncpg.connect(url, password=password, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as e:
        raise Unavailable(f"cannot connect: {e or type(e).__name__}") from e
    except asyncpg.InvalidPasswordError as e:
        raise EgressRefused(
            f"the database refused the password: {e}; check egress.sql_database.secret"
        ) from None
    except asyncpg.InvalidAuthorizationSpecificationError as e:
        raise EgressRefused(f"the database refused the user: {e}") from None
    except asyncpg.InvalidCatalogNameError as e:
        raise EgressRefused(f"{e}: create it, or fix egress.sql_database.url") from None
    except asyncpg.PostgresError as e:
        if _transient(e):
            raise Unavailable(f"cannot connect: {e}") from e
        raise EgressRefused(f"cannot connect: {_describe(e)}") from None
    except (ValueError, asyncpg.InterfaceError) as e:  # a URL asyncpg cannot use
        raise EgressRefused(f"cannot connect: {e}") from None
    return PostgresLoader(connection)


class PostgresLoader:
    errors: tuple[type[BaseException], ...] = (
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        OSError,
        TimeoutError,
    )

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def transaction(self) -> AbstractAsyncContextManager[None]:
        transaction: AbstractAsyncContextManager[None] = self.connection.transaction()
        return transaction

    async def empty_table(self, directory: str) -> Table:
        parts = directory.split(".", 1)
        regclass = ".".join(_quote(p) for p in parts)
        found = await self.connection.fetchrow(
            "SELECT n.nspname, c.relname, c.relkind::text AS relkind FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)",
            regclass,
        )
        if found is None or found["relkind"] not in ("r", "p"):
            raise EgressRefused(
                f"no table {directory!r} in the database: the directory /{directory}/ names "
                "the table its files are loaded into; create the table first"
            )
        columns = await self.connection.fetch(
            "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass($1) "
            "AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            regclass,
        )
        table = Table(found["nspname"], found["relname"], tuple(c["attname"] for c in columns))
        # DELETE, not TRUNCATE: readers keep seeing the previous rows until the commit.
        qualified = f"{_quote(table.schema)}.{_quote(table.name)}"
        await self.connection.execute(f"DELETE FROM {qualified}")  # noqa: S608 (quoted)
        return table

    async def load(
        self, table: Table, columns: tuple[str, ...], batches: AsyncIterator[Batch]
    ) -> None:
        async def source() -> AsyncIterator[bytes]:
            async for batch in batches:
                yield copy_csv(batch.rows)

        await self.connection.copy_to_table(
            table.name,
            schema_name=table.schema,
            columns=list(columns),
            format="csv",
            source=source(),
        )

    def failure(self, error: BaseException, path: str | None) -> Exception:
        if isinstance(error, asyncpg.PostgresError) and not _transient(error):
            where = f"{path}: " if path else ""
            return EgressRefused(where + _describe(error))
        if isinstance(error, asyncpg.PostgresError):
            return Unavailable(f"database error, worth retrying: {_describe(error)}")
        return Unavailable(f"connection to the database lost: {error}")

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.connection.close(), timeout=10)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            self.connection.terminate()


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _transient(e: BaseException) -> bool:
    state = getattr(e, "sqlstate", None) or ""
    return state.startswith(_TRANSIENT_STATES)


def _describe(e: asyncpg.PostgresError) -> str:
    text = str(e)
    detail = getattr(e, "detail", None)
    context = getattr(e, "context", None)
    if detail:
        text += f" ({detail})"
    if context:
        text += f" [{context}]"
    return text
