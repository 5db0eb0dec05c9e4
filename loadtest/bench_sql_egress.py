"""SQL egress throughput against PostgreSQL's own COPY of the same rows, in one run.

    .venv/bin/python -m loadtest.bench_sql_egress [--rows N] [--files F] [--rounds R]

Loads one output commit's worth of CSV (``F`` files of ``N / F`` rows each into one table) the
way the scheduler does it (:func:`tusk_scheduler.domain.sql_egress.load_commit`: files read
in 64 KiB pieces, parsed, re-quoted and streamed into ``COPY``, one transaction with the
``DELETE``), and, as the baseline, the same bytes handed straight to ``COPY`` in one
transaction with the same ``DELETE``: the floor PostgreSQL sets. The two alternate round by
round; the medians and their ratio are printed. The repo service is left out (the files are
in memory): this measures what egress adds on top of the database.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable

import asyncpg  # type: ignore[import-untyped]

from tests.backing.postgres import PostgresServer
from tusk.pipelines.models import FileFormat
from tusk_scheduler.domain.sql_egress import Progress, load_commit

PIECE = 64 * 1024
TABLE = "CREATE TABLE people (id bigint PRIMARY KEY, name text, score double precision, note text)"


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


async def egress(url: str, tree: dict[str, bytes]) -> float:
    started = time.perf_counter()
    progress = Progress()
    await load_commit(url, "", FileFormat(), source(tree), progress)
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


async def run(rows: int, files: int, rounds: int) -> None:
    postgres = PostgresServer()
    await asyncio.to_thread(postgres.start)
    try:
        url = postgres.new_database().replace("postgresql+asyncpg://", "postgresql://")
        connection = await asyncpg.connect(url)
        await connection.execute(TABLE)
        await connection.close()
        tree = make_files(rows, files)
        size = sum(map(len, tree.values()))
        print(f"{rows} rows in {files} files, {size / 1e6:.1f} MB; load {os.getloadavg()}")
        await egress(url, tree)  # warm-up, both sides
        await baseline(url, tree)
        ours, theirs = [], []
        for _ in range(rounds):
            ours.append(await egress(url, tree))
            theirs.append(await baseline(url, tree))
        a, b = statistics.median(ours), statistics.median(theirs)
        print(f"egress (parse + COPY): median {a:.3f} s, {rows / a:,.0f} rows/s")
        print(f"COPY alone (baseline): median {b:.3f} s, {rows / b:,.0f} rows/s")
        print(f"ratio egress / baseline: {a / b:.2f}; load {os.getloadavg()}")
    finally:
        await asyncio.to_thread(postgres.stop)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(run(args.rows, args.files, args.rounds))


if __name__ == "__main__":
    main()
