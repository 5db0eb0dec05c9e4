"""SQL egress to PostgreSQL, with Pachyderm's meaning: each top-level directory of the output
commit names a table (``/people/…`` → ``people``, ``/analytics.people/…`` →
``analytics.people``); every file below it, however deep, holds rows of that table. The table
must exist. A table the commit has files for is emptied, then loaded with those rows; tables
it has no files for are left alone. All of one commit's tables change in one transaction, so
readers see the previous commit's rows or this one's, never a mix; and loading the same
commit again leaves the same rows (egress is retried after a failure that may pass).

Each file streams from the repo service through :class:`.rows.RowReader` into ``COPY``:
PostgreSQL parses the values into the columns' types itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from tusk.errors import Unavailable
from tusk.pipelines.models import FileFormat
from tusk_scheduler.domain.rows import Row, RowError, RowReader, copy_csv

CONNECT_TIMEOUT = 30.0  # seconds

# Worth trying again: the server is not there, going away, or asked us to wait.
_TRANSIENT_STATES = ("08", "53", "57P", "40001", "40P01", "55P03")


class EgressRefused(Exception):
    """The egress cannot succeed as the spec and the data stand; the message says why."""


@dataclass
class Progress:
    files: int = 0
    bytes: int = 0
    rows: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Table:
    schema: str
    name: str
    columns: tuple[str, ...]

    @property
    def qualified(self) -> str:
        return f"{_quote(self.schema)}.{_quote(self.name)}"


FileSource = AsyncIterator[tuple[str, Callable[[], AsyncGenerator[bytes, None]]]]


async def load_commit(
    url: str,
    password: str,
    file_format: FileFormat,
    files: FileSource,
    progress: Progress,
    on_file: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Load ``files`` (path, opener of its contents) into the database at ``url``, one
    transaction. ``EgressRefused`` for what will not pass by itself, ``Unavailable`` for what
    may (the server unreachable, a connection lost); ``progress`` counts as it goes."""
    connection = await _connect(url, password)
    try:
        async with connection.transaction():
            tables: dict[str, Table] = {}
            async for path, open_file in files:
                directory, _, rest = path.lstrip("/").partition("/")
                if not rest:
                    raise EgressRefused(
                        f"{path}: a file at the top of the output commit is in no table; each "
                        "top-level directory names the table its files are loaded into"
                    )
                table = tables.get(directory)
                if table is None:
                    table = tables[directory] = await _empty_table(connection, directory)
                    progress.rows.setdefault(directory, 0)
                async with contextlib.aclosing(open_file()) as pieces:
                    await _copy_file(
                        connection, table, directory, path, pieces, file_format, progress
                    )
                progress.files += 1
                if on_file is not None:
                    await on_file()
    except asyncpg.PostgresError as e:
        if _transient(e):
            raise Unavailable(f"database error, worth retrying: {_describe(e)}") from e
        raise EgressRefused(_describe(e)) from None
    except (OSError, TimeoutError, asyncpg.InterfaceError) as e:
        raise Unavailable(f"connection to the database lost: {e}") from e
    finally:
        await _close(connection)


async def _connect(url: str, password: str) -> Any:
    try:
        return await asyncpg.connect(url, password=password, timeout=CONNECT_TIMEOUT)
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


async def _close(connection: Any) -> None:
    try:
        await asyncio.wait_for(connection.close(), timeout=10)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        connection.terminate()


async def _empty_table(connection: Any, directory: str) -> Table:
    """The table a directory names, emptied (inside the caller's transaction)."""
    parts = directory.split(".", 1)
    regclass = ".".join(_quote(p) for p in parts)
    found = await connection.fetchrow(
        "SELECT n.nspname, c.relname, c.relkind::text AS relkind FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)",
        regclass,
    )
    if found is None or found["relkind"] not in ("r", "p"):
        raise EgressRefused(
            f"no table {directory!r} in the database: the directory /{directory}/ names the "
            "table its files are loaded into; create the table first"
        )
    columns = await connection.fetch(
        "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass($1) "
        "AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        regclass,
    )
    table = Table(found["nspname"], found["relname"], tuple(c["attname"] for c in columns))
    # DELETE, not TRUNCATE: readers keep seeing the previous rows until the commit.
    await connection.execute(f"DELETE FROM {table.qualified}")  # noqa: S608 (quoted identifiers)
    return table


async def _copy_file(
    connection: Any,
    table: Table,
    directory: str,
    path: str,
    pieces: AsyncIterator[bytes],
    file_format: FileFormat,
    progress: Progress,
) -> None:
    try:
        reader = RowReader(file_format.kind, directory, table.columns, file_format.columns)
        count = await _copy_rows(connection, table, reader, pieces, progress)
    except RowError as e:
        raise EgressRefused(f"{path}: {e}") from None
    except asyncpg.PostgresError as e:
        if _transient(e):
            raise
        raise EgressRefused(f"{path}: {_describe(e)}") from None
    progress.rows[directory] += count


async def _copy_rows(
    connection: Any,
    table: Table,
    reader: RowReader,
    pieces: AsyncIterator[bytes],
    progress: Progress,
) -> int:
    """COPY the rows of one file; how many. The columns are known once the first rows are
    (a CSV header names them), so the file is read that far before the COPY starts."""
    first: list[Row] = []
    ended = False
    while not first:
        piece = await anext(pieces, None)
        if piece is None:
            first, ended = reader.end(), True
            break
        progress.bytes += len(piece)
        first = reader.feed(piece)
    if not first:
        return 0
    count = len(first)

    async def source() -> AsyncIterator[bytes]:
        nonlocal count
        yield copy_csv(first)
        if ended:
            return
        async for piece in pieces:
            progress.bytes += len(piece)
            rows = reader.feed(piece)
            count += len(rows)
            if rows:
                yield copy_csv(rows)
        rows = reader.end()
        count += len(rows)
        if rows:
            yield copy_csv(rows)

    assert reader.columns is not None
    await connection.copy_to_table(
        table.name,
        schema_name=table.schema,
        columns=list(reader.columns),
        format="csv",
        source=source(),
    )
    return count


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
