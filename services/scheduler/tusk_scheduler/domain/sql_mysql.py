"""SQL egress into MySQL or MariaDB (``mysql://user@host:3306/database``) with aiomysql. Rows go
in as multi-row ``INSERT`` statements of about :data:`STATEMENT_BYTES` each: the server parses
the values into the columns' types, in strict mode so that a value that does not fit is refused
rather than truncated. ``LOAD DATA LOCAL INFILE`` is not used: the driver answers it by reading
whatever client file the server names, which an egress target must not be trusted with.

Only transactional tables (InnoDB) are loaded: the commit's tables change together or not at
all, and a table that cannot roll back would break that."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomysql  # type: ignore[import-untyped]
import pymysql  # type: ignore[import-untyped]

from tusk.errors import Unavailable
from tusk_scheduler.domain.rows import Row
from tusk_scheduler.domain.sql_loader import Batch, EgressRefused, Table

CONNECT_TIMEOUT = 30  # seconds
STATEMENT_BYTES = 1 << 20  # well under the servers' default max_allowed_packet (16 MiB)
# Strict: a bad value is an error, not a warning and a zero. Set whole (the server's own mode
# replaced), so that a server's choice (ANSI_QUOTES, NO_BACKSLASH_ESCAPES…) cannot change how
# the statements below read.
SQL_MODE = "STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO"

# Worth trying again: the server is not there or went away (client errors 2002-2013, 2055),
# too busy or shutting down, or our transaction lost a lock race.
_TRANSIENT_CODES = frozenset(
    {1040, 1053, 1152, 1158, 1159, 1160, 1161, 1205, 1213, 1927, 2002, 2003, 2005, 2006}
    | {2013, 2055}
)
_AT_ROW = re.compile(r" at row (\d+)$")
# A string literal's escapes under SQL_MODE (which leaves out NO_BACKSLASH_ESCAPES).
_ESCAPES = str.maketrans(
    {"\0": "\\0", "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\x1a": "\\Z", "'": "\\'", '"': '\\"'}
)


class _AtLines(Exception):
    """A driver error raised by a statement holding the rows from these lines."""

    def __init__(self, error: pymysql.err.MySQLError, lines: list[int]) -> None:
        super().__init__(str(error))
        self.error = error
        self.lines = lines


async def connect(url: str, password: str) -> MySQLLoader:
    parts = urlsplit(url)
    if parts.query:
        raise EgressRefused(f"{url}: options after '?' are not read for mysql:// URLs; remove them")
    try:
        port = parts.port or 3306
    except ValueError as e:
        raise EgressRefused(f"cannot connect: {e}") from None
    try:
        connection = await aiomysql.connect(
            host=parts.hostname or "localhost",
            port=port,
            user=unquote(parts.username or ""),
            password=password,
            db=unquote(parts.path.lstrip("/")) or None,
            charset="utf8mb4",
            autocommit=False,
            connect_timeout=CONNECT_TIMEOUT,
            init_command=f"SET SESSION sql_mode = '{SQL_MODE}'",
        )
    except pymysql.err.MySQLError as e:
        code = _code(e)
        if code in _TRANSIENT_CODES:
            raise Unavailable(f"cannot connect: {_describe(e)}") from e
        if code == 1045:
            raise EgressRefused(
                f"the database refused the password: {_describe(e)}; "
                "check egress.sql_database.secret"
            ) from None
        if code == 1049:
            raise EgressRefused(
                f"{_describe(e)}: create it, or fix egress.sql_database.url"
            ) from None
        raise EgressRefused(f"cannot connect: {_describe(e)}") from None
    except (OSError, TimeoutError) as e:
        raise Unavailable(f"cannot connect: {e or type(e).__name__}") from e
    return MySQLLoader(connection)


class MySQLLoader:
    errors: tuple[type[BaseException], ...] = (
        pymysql.err.MySQLError,
        _AtLines,
        OSError,
        TimeoutError,
    )

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self._booleans: dict[Table, frozenset[str]] = {}  # BOOLEAN (tinyint(1)) columns

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        await self.connection.begin()
        try:
            yield
        except BaseException:
            with contextlib.suppress(pymysql.err.MySQLError, OSError):
                await self.connection.rollback()
            raise
        await self.connection.commit()

    async def empty_table(self, directory: str) -> Table:
        # As for PostgreSQL: the first dot ends the schema's (the database's) name.
        schema: str | None
        schema, dot, name = directory.partition(".")
        if not dot:
            schema, name = None, directory
        async with self.connection.cursor() as cursor:
            await cursor.execute(
                "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE, ENGINE "
                "FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = COALESCE(%s, DATABASE()) AND TABLE_NAME = %s",
                (schema, name),
            )
            found = await cursor.fetchone()
            if found is None or found[2] not in ("BASE TABLE", "SYSTEM VERSIONED"):
                raise EgressRefused(
                    f"no table {directory!r} in the database: the directory /{directory}/ names "
                    "the table its files are loaded into; create the table first"
                )
            if str(found[3]).lower() != "innodb":
                raise EgressRefused(
                    f"table {directory!r} uses the {found[3]} engine, which cannot roll back: "
                    "a commit's tables change in one transaction; ALTER TABLE … ENGINE=InnoDB"
                )
            await cursor.execute(
                "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
                (found[0], found[1]),
            )
            found_columns = await cursor.fetchall()
            table = Table(found[0], found[1], tuple(c[0] for c in found_columns))
            self._booleans[table] = frozenset(
                name for name, kind in found_columns if str(kind).lower() == "tinyint(1)"
            )
            # DELETE, not TRUNCATE: TRUNCATE commits at once, and readers would see it empty.
            await cursor.execute(f"DELETE FROM {_qualified(table)}")  # noqa: S608 (quoted)
        return table

    async def load(
        self, table: Table, columns: tuple[str, ...], batches: AsyncIterator[Batch]
    ) -> None:
        names = ", ".join(map(_quote, columns))
        booleans = [i for i, c in enumerate(columns) if c in self._booleans.get(table, ())]
        head = f"INSERT INTO {_qualified(table)} ({names}) VALUES "  # noqa: S608 (quoted)
        values: list[str] = []
        lines: list[int] = []
        size = 0
        # One statement runs on the server while the next is built: the server's parsing and
        # ours overlap instead of taking turns.
        running: asyncio.Task[None] | None = None

        async def execute(cursor: Any, statement: str, lines: list[int]) -> None:
            try:
                await cursor.execute(statement)
            except pymysql.err.MySQLError as e:
                raise _AtLines(e, lines) from e

        async with self.connection.cursor() as cursor:
            try:
                async for batch in batches:
                    for row, line in zip(batch.rows, batch.lines, strict=True):
                        literal = _row_literal(_as_booleans(row, booleans) if booleans else row)
                        values.append(literal)
                        lines.append(line)
                        size += len(literal) + 1
                        if size >= STATEMENT_BYTES:
                            if running is not None:
                                await running
                            statement = head + ",".join(values)
                            running = asyncio.create_task(execute(cursor, statement, lines))
                            await asyncio.sleep(0)  # let it send the statement
                            values, lines, size = [], [], 0
                if running is not None:
                    await running
                    running = None
                if values:
                    await execute(cursor, head + ",".join(values), lines)
            finally:
                if running is not None and not running.done():
                    # Cut short by an error of ours while a statement runs: its answer would
                    # be read as the next one's, so the connection is given up, and the server
                    # rolls the transaction back.
                    running.cancel()
                    await asyncio.wait([running])
                    self.connection.close()

    def failure(self, error: BaseException, path: str | None) -> Exception:
        lines: list[int] = []
        if isinstance(error, _AtLines):
            lines = error.lines
            error = error.error
        if not isinstance(error, pymysql.err.MySQLError):
            return Unavailable(f"connection to the database lost: {error}")
        if _code(error) in _TRANSIENT_CODES:
            return Unavailable(f"database error, worth retrying: {_describe(error)}")
        message = _describe(error)
        at_row = _AT_ROW.search(message)
        if at_row and 0 < int(at_row.group(1)) <= len(lines):
            message = f"line {lines[int(at_row.group(1)) - 1]}: {message[: at_row.start()]}"
        elif lines:
            message = f"lines {lines[0]}-{lines[-1]}: {message}"
        return EgressRefused((f"{path}: " if path else "") + message)

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.connection.ensure_closed(), timeout=10)
        except (OSError, TimeoutError, pymysql.err.MySQLError):
            self.connection.close()


# What PostgreSQL reads as a boolean (JSON's true and false among them), for MySQL's BOOLEAN,
# which is tinyint(1) and would refuse the words.
_BOOLEAN_WORDS = {
    **dict.fromkeys(("true", "t", "yes", "y", "on"), "1"),
    **dict.fromkeys(("false", "f", "no", "n", "off"), "0"),
}


def _as_booleans(row: Row, indices: list[int]) -> Row:
    row = list(row)
    for i in indices:
        value = row[i]
        if value is not None:
            row[i] = _BOOLEAN_WORDS.get(value.strip().lower(), value)
    return row


def _row_literal(row: Row) -> str:
    return (
        "("
        + ",".join("NULL" if v is None else "'" + v.translate(_ESCAPES) + "'" for v in row)
        + ")"
    )


def _quote(identifier: str) -> str:
    return "`" + identifier.replace("`", "``") + "`"


def _qualified(table: Table) -> str:
    return f"{_quote(table.schema)}.{_quote(table.name)}"


def _code(e: pymysql.err.MySQLError) -> int | None:
    return e.args[0] if e.args and isinstance(e.args[0], int) else None


def _describe(e: pymysql.err.MySQLError) -> str:
    if len(e.args) >= 2:
        return str(e.args[1])
    return str(e) or type(e).__name__
