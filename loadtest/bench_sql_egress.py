"""SQL egress throughput against the database's own bulk load of the same rows, in one run.

    .venv/bin/python -m loadtest.bench_sql_egress [--rows N] [--files F] [--rounds R]
        [--database postgres|mariadb|both]

Loads one output commit's worth of CSV (``F`` files of ``N / F`` rows each into one table) the
way the scheduler does it (:func:`tusk_scheduler.domain.sql_egress.load_commit`: files read
in 64 KiB pieces, parsed, re-quoted and streamed into ``COPY``, one transaction with the
``DELETE``), and, as the baseline, the same bytes handed straight to ``COPY`` in one
transaction with the same ``DELETE``: the floor PostgreSQL sets. The two alternate round by
round; the medians and their ratio are printed. The repo service is left out (the files are
in memory): this measures what egress adds on top of the database.

MariaDB (``mysql://``): the egress sends multi-row ``INSERT`` statements; the baseline is
MariaDB's own ``LOAD DATA LOCAL INFILE`` of the same CSV files, one transaction with the same
``DELETE``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiomysql  # type: ignore[import-untyped]
import asyncpg  # type: ignore[import-untyped]

from tests.backing import mariadb
from tests.backing.mariadb import MariaDBServer
from tests.backing.postgres import PostgresServer
from tusk.pipelines.models import FileFormat
from tusk_scheduler.domain.sql_egress import Progress, load_commit

PIECE = 64 * 1024
TABLE = "CREATE TABLE people (id bigint PRIMARY KEY, name text, score double precision, note text)"
MYSQL_TABLE = "CREATE TABLE people (id bigint PRIMARY KEY, name text, score double, note text)"


def make_files(rows: int, files: int) -> dict[str, bytes]:
    per = rows // files
    out = {}
    for f in range(files):
        lines = [
            f'{i},"person {i}",{i % 997 / 7:.4f},"a, quoted ""note"" {i % 13}"\n'
            for i in range(f * per, (f + 1) * per)
        ]
        out[f"/people/part-{f:04}.csv"] = "".join(lines).encode()
    return out


def source(
    tree: dict[str, bytes],
) -> AsyncIterator[tuple[str, Callable[[], AsyncGenerator[bytes, None]]]]:
    async def files() -> AsyncIterator[tuple[str, Callable[[], AsyncGenerator[bytes, None]]]]:
        for path, data in tree.items():

            async def pieces(data: bytes = data) -> AsyncGenerator[bytes, None]:
                for start in range(0, len(data), PIECE):
                    yield data[start : start + PIECE]

            yield path, pieces

    return files()


async def egress(url: str, tree: dict[str, bytes], password: str = "") -> float:
    started = time.perf_counter()
    progress = Progress()
    await load_commit(url, password, FileFormat(), source(tree), progress)
    return time.perf_counter() - started


async def baseline(url: str, tree: dict[str, bytes]) -> float:
    started = time.perf_counter()
    connection = await asyncpg.connect(url)
    try:
        async with connection.transaction():
            await connection.execute("DELETE FROM people")
            for data in tree.values():

                async def pieces(data: bytes = data) -> AsyncIterator[bytes]:
                    for start in range(0, len(data), PIECE):
                        yield data[start : start + PIECE]

                await connection.copy_to_table("people", source=pieces(), format="csv")
    finally:
        await connection.close()
    return time.perf_counter() - started


async def mysql_connect(server: MariaDBServer, database: str, **options: Any) -> Any:
    return await aiomysql.connect(
        host="127.0.0.1",
        port=server.port,
        user=mariadb.USER,
        password=mariadb.PASSWORD,
        db=database,
        **options,
    )


async def mysql_baseline(server: MariaDBServer, database: str, paths: list[Path]) -> float:
    started = time.perf_counter()
    # local_infile: our own files, to our own server
    connection = await mysql_connect(server, database, local_infile=True, autocommit=False)
    try:
        await connection.begin()
        async with connection.cursor() as cursor:
            await cursor.execute("DELETE FROM people")
            for path in paths:
                await cursor.execute(
                    f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE people FIELDS TERMINATED BY ',' "
                    "OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '' LINES TERMINATED BY '\\n'"
                )
        await connection.commit()
    finally:
        connection.close()
    return time.perf_counter() - started


async def mysql_digest(server: MariaDBServer, database: str) -> tuple[int, int]:
    """The table's row count and a checksum of its values."""
    connection = await mysql_connect(server, database)
    try:
        async with connection.cursor() as cursor:
            await cursor.execute(
                "SELECT COUNT(*), SUM(CRC32(CONCAT_WS('|', id, name, score, note))) FROM people"
            )
            count, checksum = await cursor.fetchone()
            return int(count), int(checksum)
    finally:
        connection.close()


async def compare(
    what: str,
    rows: int,
    rounds: int,
    ours_once: Callable[[], Awaitable[float]],
    theirs_once: Callable[[], Awaitable[float]],
) -> None:
    await ours_once()  # warm-up, both sides
    await theirs_once()
    ours, theirs = [], []
    for _ in range(rounds):
        ours.append(await ours_once())
        theirs.append(await theirs_once())
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"{what}: egress median {a:.3f} s, {rows / a:,.0f} rows/s")
    print(f"{what}: baseline median {b:.3f} s, {rows / b:,.0f} rows/s")
    print(f"{what}: ratio egress / baseline {a / b:.2f}; load {os.getloadavg()}")


async def run_postgres(tree: dict[str, bytes], rows: int, rounds: int) -> None:
    postgres = PostgresServer()
    await asyncio.to_thread(postgres.start)
    try:
        url = postgres.new_database().replace("postgresql+asyncpg://", "postgresql://")
        connection = await asyncpg.connect(url)
        await connection.execute(TABLE)
        await connection.close()
        await compare(
            "PostgreSQL (parse + COPY vs COPY)",
            rows,
            rounds,
            lambda: egress(url, tree),
            lambda: baseline(url, tree),
        )
    finally:
        await asyncio.to_thread(postgres.stop)


async def run_mariadb(tree: dict[str, bytes], rows: int, rounds: int) -> None:
    server = MariaDBServer()
    await asyncio.to_thread(server.start)
    try:
        database = await asyncio.to_thread(server.new_database)
        await asyncio.to_thread(server.sql, MYSQL_TABLE, database)
        with tempfile.TemporaryDirectory(prefix="bench-sql-egress-") as tmp:
            paths = []
            for path, data in tree.items():
                paths.append(Path(tmp) / path.rsplit("/", 1)[1])
                paths[-1].write_bytes(data)
            # Both sides must load the same rows, or the ratio means nothing.
            await egress(server.url(database), tree, mariadb.PASSWORD)
            ours = await mysql_digest(server, database)
            await mysql_baseline(server, database, paths)
            theirs = await mysql_digest(server, database)
            if ours != theirs or ours[0] != rows:
                raise SystemExit(f"the two loads differ: {ours} vs {theirs}, {rows} rows")
            await compare(
                "MariaDB (parse + INSERT vs LOAD DATA)",
                rows,
                rounds,
                lambda: egress(server.url(database), tree, mariadb.PASSWORD),
                lambda: mysql_baseline(server, database, paths),
            )
    finally:
        await asyncio.to_thread(server.stop)


async def run(rows: int, files: int, rounds: int, database: str) -> None:
    tree = make_files(rows, files)
    size = sum(map(len, tree.values()))
    print(f"{rows} rows in {files} files, {size / 1e6:.1f} MB; load {os.getloadavg()}")
    if database in ("postgres", "both"):
        await run_postgres(tree, rows, rounds)
    if database in ("mariadb", "both"):
        await run_mariadb(tree, rows, rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--database", choices=["postgres", "mariadb", "both"], default="both")
    args = parser.parse_args()
    asyncio.run(run(args.rows, args.files, args.rounds, args.database))


if __name__ == "__main__":
    main()
