"""Finishing a commit of many staged files, in-process, step by step, on SQLite and PostgreSQL.

    .venv/bin/python -m loadtest.bench_finish                 # 100,000 files, 3 rounds, SQLite
    .venv/bin/python -m loadtest.bench_finish --postgres      # also PostgreSQL (tests.backing)

Each round stages ``--files`` puts (100 directories) into a new commit of a fresh repo through
the service's own staging code, then finishes it through ``RepoService.finish_commit`` in one
write session, twice interleaved: clearing the staged rows inside the finishing transaction
(the baseline, as every finish did before) and after it in batches
(``tusk_repo.staging.StagedCleaner``, as the API does). Printed per step: wall and CPU of
reading the staged rows, merging them into the tree, saving the nodes, clearing, and the
transaction's commit; medians over the rounds. Also the floor: reading the same rows with the
bare driver (sqlite3 / asyncpg) on the same connection. Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from tusk.db import Database, migrate
from tusk.events.outbox import OutboxWriter
from tusk.objectstore.chunks import ChunkedFile, hash_bytes
from tusk_repo import store
from tusk_repo.service import RepoService
from tusk_repo.staging import StagedCleaner
from tusk_repo.store import TreeStore
from tusk_repo.tables import outbox

T = TypeVar("T")
STEPS = ("read", "merge", "save", "clear", "transaction", "after")


class Clock:
    """Wall and CPU (this process, every thread) per named step."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    async def time(self, name: str, action: Awaitable[T]) -> T:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return await action
        finally:
            self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - wall
            self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - cpu


def _instrument(service: RepoService, clock: list[Clock]) -> None:
    """Time the finish's steps by wrapping the functions it calls."""
    import tusk_repo.service as service_module

    def wrap(module: Any, attribute: str, step: str) -> None:
        inner: Callable[..., Awaitable[Any]] = getattr(module, attribute)

        async def timed(*args: Any, **kwargs: Any) -> Any:
            return await clock[0].time(step, inner(*args, **kwargs))

        setattr(module, attribute, timed)

    wrap(service_module.store, "staged_changes", "read")
    wrap(service_module.trees, "merge", "merge")
    wrap(service_module.store, "clear_staged", "clear")
    wrap(service.trees, "save", "save")


async def _stage(db: Database, commit_id: str, n: int, salt: str) -> None:
    for start in range(0, n, 10_000):
        puts = []
        for i in range(start, min(n, start + 10_000)):
            digest = hash_bytes(f"{salt}:{i}".encode())
            puts.append((f"/d{i * 100 // n:03}/f{i:07}", ChunkedFile(digest, 64, ((digest, 64),))))
        async with db.session() as session:
            await store.stage_puts(session, commit_id, puts)


async def _bare_read(db: Database, commit_id: str) -> float:
    """Seconds to read the commit's staged rows through the bare driver."""
    async with db.session(write=False) as session:
        connection = await session.connection()
        driver = (await connection.get_raw_connection()).driver_connection
        assert driver is not None
        started = time.perf_counter()
        if db.is_sqlite:
            await driver.execute_fetchall(
                "SELECT path, op, file_hash, size FROM repo_staged WHERE commit_id = ?",
                (commit_id,),
            )
        else:
            await driver.fetch(
                "SELECT path, op, file_hash, size FROM repo_staged WHERE commit_id = $1",
                commit_id,
            )
        return time.perf_counter() - started


async def run_backend(url: str, files: int, rounds: int) -> dict[str, dict[str, list[float]]]:
    await migrate(url)
    db = Database.from_url(url)
    service = RepoService(TreeStore(), OutboxWriter(outbox, "tusk/repo"))
    clock = [Clock()]
    _instrument(service, clock)
    results: dict[str, dict[str, list[float]]] = {}
    try:
        for round_ in range(rounds):
            for deferred in (False, True):
                label = "deferred" if deferred else "inline (baseline)"
                name = f"r{uuid.uuid4().hex[:10]}"
                async with db.session() as session:
                    repo = await service.create_repo(session, name, "")
                    commit = await service.start_commit(session, repo, "master")
                await _stage(db, commit.id, files, f"{round_}{deferred}")
                bare = await _bare_read(db, commit.id)
                clock[0] = Clock()
                began = time.perf_counter()
                async with db.session() as session:
                    repo = await service.get_repo(session, name)
                    await service.finish_commit(
                        session, repo, commit.id, clear_staged=not deferred
                    )
                    committing = time.perf_counter()
                clock[0].wall["commit"] = time.perf_counter() - committing
                clock[0].wall["transaction"] = time.perf_counter() - began
                if deferred:
                    await clock[0].time("after", StagedCleaner(db).clear(commit.id))
                samples = results.setdefault(label, {})
                samples.setdefault("bare driver read", []).append(bare)
                for step, seconds in clock[0].wall.items():
                    samples.setdefault(step, []).append(seconds)
                for step, seconds in clock[0].cpu.items():
                    samples.setdefault(f"{step} CPU", []).append(seconds)
                print(f"  round {round_ + 1} {label}: transaction "
                      f"{clock[0].wall['transaction']:.3f} s", flush=True)
    finally:
        await db.dispose()
    return results


def report(backend: str, results: dict[str, dict[str, list[float]]]) -> None:
    keys = sorted({k for samples in results.values() for k in samples},
                  key=lambda k: (k.split()[0] not in STEPS, k))
    print(f"\n{backend}: medians, seconds")
    labels = list(results)
    print(f"{'step':<22}" + "".join(f"{label:>20}" for label in labels))
    for key in keys:
        cells = [
            f"{statistics.median(results[label][key]):>20.3f}" if key in results[label]
            else f"{'-':>20}"
            for label in labels
        ]
        print(f"{key:<22}" + "".join(cells))


async def main_async(args: argparse.Namespace) -> None:
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="tusk-bench-finish-") as work:
        url = f"sqlite+aiosqlite:///{Path(work) / 'tusk.db'}"
        print(f"SQLite, {args.files:,} files, {args.rounds} rounds ...")
        report("SQLite", await run_backend(url, args.files, args.rounds))
    if args.postgres:
        from tests.backing.postgres import PostgresServer

        server = PostgresServer()
        server.start()
        try:
            print(f"PostgreSQL, {args.files:,} files, {args.rounds} rounds ...")
            report("PostgreSQL", await run_backend(server.url, args.files, args.rounds))
        finally:
            server.stop()
    print(f"load average after: {os.getloadavg()[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", action="store_true", help="also on PostgreSQL")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
