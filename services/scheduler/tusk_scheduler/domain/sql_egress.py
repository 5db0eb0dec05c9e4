"""SQL egress, with Pachyderm's meaning: each top-level directory of the output commit names a
table (``/people/…`` → ``people``, ``/analytics.people/…`` → ``analytics.people``); every file
below it, however deep, holds rows of that table. The table must exist. A table the commit has
files for is emptied, then loaded with those rows; tables it has no files for are left alone.
All of one commit's tables change in one transaction, so readers see the previous commit's rows
or this one's, never a mix; and loading the same commit again leaves the same rows (egress is
retried after a failure that may pass).

Each file streams from the repo service through :class:`.rows.RowReader` into the database's
:class:`.sql_loader.Loader`: PostgreSQL (:mod:`.sql_postgres`) or MySQL and MariaDB
(:mod:`.sql_mysql`), chosen by the URL's scheme.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from tusk.pipelines.models import MYSQL_SCHEMES, POSTGRES_SCHEMES, FileFormat
from tusk_scheduler.domain import sql_mysql, sql_postgres
from tusk_scheduler.domain.rows import RowError, RowReader
from tusk_scheduler.domain.sql_loader import Batch, EgressRefused, Loader, Table

__all__ = ["EgressRefused", "FileSource", "Progress", "load_commit"]


@dataclass
class Progress:
    files: int = 0
    bytes: int = 0
    rows: dict[str, int] = field(default_factory=dict)


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
    loader = await connect(url, password)
    try:
        async with loader.transaction():
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
                    table = tables[directory] = await loader.empty_table(directory)
                    progress.rows.setdefault(directory, 0)
                async with contextlib.aclosing(open_file()) as pieces:
                    await _load_file(loader, table, directory, path, pieces, file_format, progress)
                progress.files += 1
                if on_file is not None:
                    await on_file()
    except loader.errors as e:
        raise loader.failure(e, None) from e
    finally:
        await loader.close()


async def connect(url: str, password: str) -> Loader:
    scheme = url.partition("://")[0]
    if scheme in POSTGRES_SCHEMES:
        return await sql_postgres.connect(url, password)
    if scheme in MYSQL_SCHEMES:
        return await sql_mysql.connect(url, password)
    raise EgressRefused(f"{scheme}:// databases are not written to")


async def _load_file(
    loader: Loader,
    table: Table,
    directory: str,
    path: str,
    pieces: AsyncIterator[bytes],
    file_format: FileFormat,
    progress: Progress,
) -> None:
    try:
        reader = RowReader(file_format.kind, directory, table.columns, file_format.columns)
        batches = _batches(reader, pieces, progress, directory)
        # The columns are known once the first rows are (a CSV header names them).
        first = await anext(batches, None)
        if first is None:
            return
        assert reader.columns is not None
        await loader.load(table, reader.columns, _prepend(first, batches))
    except RowError as e:
        raise EgressRefused(f"{path}: {e}") from None
    except loader.errors as e:
        raise loader.failure(e, path) from e


async def _batches(
    reader: RowReader, pieces: AsyncIterator[bytes], progress: Progress, table: str
) -> AsyncIterator[Batch]:
    """The rows of one file as its pieces arrive, counted."""
    async for piece in pieces:
        progress.bytes += len(piece)
        rows = reader.feed(piece)
        if rows:
            progress.rows[table] += len(rows)
            yield Batch(rows, reader.lines)
    rows = reader.end()
    if rows:
        progress.rows[table] += len(rows)
        yield Batch(rows, reader.lines)


async def _prepend(first: Batch, rest: AsyncIterator[Batch]) -> AsyncIterator[Batch]:
    yield first
    async for batch in rest:
        yield batch
