"""Chaos: a stream of commits and jobs on the services stack while every part is killed.

    .venv/bin/python -m loadtest.chaos [--commits N] [--rounds N] [--settle SECONDS]

Starts PostgreSQL, Kafka and versitygw (``tests.backing``) and repo, trigger and scheduler as
separate uvicorn processes on them (objects in S3), creates an input repo and a pipeline that
copies each file (glob ``/*``; every run of a datum is recorded in a file), then makes
``--commits`` commits of one new file each. Meanwhile it SIGKILLs and restarts, in turn, the
repo service, the trigger, the scheduler, PostgreSQL, Kafka and the S3 server (``--rounds``
times over), one fault every few commits. A commit that fails on a fault is looked at (its
finish may have happened) and retried.

At the end, once every job has ended (at most ``--settle`` seconds), it checks:

- every acknowledged commit is finished and whole (its file, byte for byte), every finished
  commit of the input repo is whole, and no commit is left open: nothing half-written;
- every commit.finished was delivered: each finished input commit has a job;
- every job ran once: no input commit has two jobs, every job succeeded, and the output
  repo's head holds the copy of every file;
- every outbox row was published (the services' ``*_outbox`` tables, on PostgreSQL).

It prints the faults injected, the operations done and retried, the losses (which must be 0)
and how often a datum's command ran more than once (allowed: a worker killed mid-datum runs
it again; its output is written once). Exit status 1 if anything was lost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

if __package__ in (None, ""):  # run as `python loadtest/chaos.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text

from loadtest.bench_pipelines import ServicesStack
from loadtest.report import say
from tests.backing.common import ManagedProcess, ServiceError, wait_until
from tests.backing.kafka import KafkaBroker
from tests.backing.postgres import PostgresServer, ensure_installed
from tests.backing.s3 import S3Server
from tusk.client import RepoClient
from tusk.client.pipelines import TriggerClient
from tusk.db import Database
from tusk.errors import Conflict, NotFound, TuskError
from tusk.events.kafka import KafkaBus
from tusk.events.types import DLQ_TOPIC

T = TypeVar("T")
REPO, PIPELINE, BUCKET = "chaos-in", "chaos-copy", "tusk-chaos"
OP_PATIENCE = 300.0
"""How long one operation is retried through a fault before the run gives up."""


def payload(i: int) -> bytes:
    return f"commit {i:04}\n".encode() * 200


@dataclass
class Tally:
    faults: list[str] = field(default_factory=list)
    operations: int = 0
    retries: int = 0
    acknowledged: dict[int, str] = field(default_factory=dict)  # i → commit id
    losses: list[str] = field(default_factory=list)


class ChaosStack(ServicesStack):
    """repo, trigger and scheduler processes on PostgreSQL, Kafka and S3."""

    def __init__(self, work: Path, kafka: KafkaBroker, postgres: PostgresServer, s3: S3Server):
        super().__init__(work, kafka.bootstrap, postgres.url)
        self.env.update(
            TUSK_OBJECT_STORE_URL=f"s3://{BUCKET}/objects",
            TUSK_S3_ENDPOINT_URL=s3.endpoint_url,
            TUSK_S3_ACCESS_KEY_ID=s3.access_key,
            TUSK_S3_SECRET_ACCESS_KEY=s3.secret_key,
            TUSK_S3_REGION=s3.region,
            TUSK_TRIGGER_URL=self.url("trigger"),
            TUSK_SCHEDULER_URL=self.url("scheduler"),
            TUSK_SCHEDULER_CODE_DIR=str(work),
            # What each service did (events handled, jobs made), for the logs kept on a loss.
            TUSK_LOG_LEVEL="INFO",
        )

    def process(self, name: str) -> ManagedProcess:
        return next(p for p in self.processes if p.name == name)


def restart_in_place(process: ManagedProcess, ready: Callable[[], bool], what: str) -> None:
    """SIGKILL, then start the same command again (same port, same data) and wait for it."""
    process.kill()
    process.start()
    wait_until(ready, 180, what, process, interval=0.2)


def faults(
    stack: ChaosStack, kafka: KafkaBroker, postgres: PostgresServer, s3: S3Server
) -> list[tuple[str, Callable[[], None]]]:
    import httpx

    def service(name: str) -> Callable[[], None]:
        def ready() -> bool:
            try:
                return httpx.get(f"{stack.url(name)}/readyz", timeout=2).is_success
            except httpx.HTTPError:
                return False

        return lambda: restart_in_place(stack.process(name), ready, f"{name} after SIGKILL")

    def postgres_fault() -> None:
        assert postgres._process is not None
        bin_dir = ensure_installed()
        restart_in_place(
            postgres._process, lambda: postgres._accepting(bin_dir), "PostgreSQL after SIGKILL"
        )

    def s3_fault() -> None:
        assert s3._process is not None
        restart_in_place(s3._process, s3._answers_http, "versitygw after SIGKILL")

    def kafka_fault() -> None:
        kafka.kill()
        kafka.start()

    return [
        ("repo", service("repo")),
        ("trigger", service("trigger")),
        ("scheduler", service("scheduler")),
        ("postgresql", postgres_fault),
        ("kafka", kafka_fault),
        ("s3", s3_fault),
    ]


async def patiently(tally: Tally, action: Callable[[], Awaitable[T]], what: str) -> T:
    """``action()``, retried while the stack is recovering from a fault."""
    deadline = time.monotonic() + OP_PATIENCE
    delay = 0.2
    while True:
        tally.operations += 1
        try:
            return await action()
        except (TuskError, OSError) as e:
            if isinstance(e, NotFound | Conflict) or time.monotonic() > deadline:
                raise
            tally.retries += 1
            if tally.retries % 20 == 1:
                say(f"  {what}: {getattr(e, 'message', e)!s:.120}; retrying")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 3.0)


async def one_commit(repos: RepoClient, tally: Tally, i: int) -> None:
    """Commit file ``i`` until a finish is acknowledged (or found done after a lost answer)."""
    path = f"/f{i:04}.txt"
    while True:
        for stale in (await patiently(tally, lambda: _open(repos), "listing open commits")):
            # A start whose answer was lost, or a put interrupted by a fault: drop it.
            with contextlib.suppress(NotFound, Conflict):
                await patiently(
                    tally, functools.partial(repos.abandon_commit, REPO, stale), "abandon"
                )
        try:
            commit = await patiently(
                tally, lambda: repos.start_commit(REPO, "master", description=f"c{i}"), "start"
            )
        except Conflict:
            continue
        try:
            await patiently(
                tally, functools.partial(repos.put_file, REPO, commit.id, path, payload(i)), "put"
            )
            finish = functools.partial(repos.finish_commit, REPO, commit.id)
            await patiently(tally, finish, "finish")
        except (NotFound, Conflict):
            # The finish may have gone through before its answer was lost; or the commit is
            # gone (the test PostgreSQL runs with synchronous_commit=off, so a SIGKILL can
            # drop its last transactions): then it was never acknowledged, so try again.
            try:
                info = await patiently(
                    tally, functools.partial(repos.inspect_commit, REPO, commit.id), "look"
                )
            except NotFound:
                continue
            if info.state != "finished":
                continue
        tally.acknowledged[i] = commit.id
        return


async def _open(repos: RepoClient) -> list[str]:
    page = await repos.list_commits_page(REPO, branch="master", state="open", limit=10)
    return [c.id for c in page.items]


async def check(
    repos: RepoClient, trigger: TriggerClient, postgres: PostgresServer, work: Path,
    tally: Tally, settle: float,
) -> Counter[str]:
    losses = tally.losses
    finished = [c async for c in repos.list_commits(REPO, branch="master", state="finished")]
    by_id = {c.id: c for c in finished}
    for i, cid in tally.acknowledged.items():
        if cid not in by_id:
            losses.append(f"acknowledged commit {cid} (file {i}) is not finished")
    if [c async for c in repos.list_commits(REPO, state="open")]:
        losses.append("commits left open on the input repo")
    expected = {f"/f{i:04}.txt": payload(i) for i in range(len(tally.acknowledged) + 1000)}
    for commit in finished:
        async for entry in repos.walk(REPO, commit.id):
            if entry.type != "file":
                continue
            data = b"".join([p async for p in repos.get_file(REPO, commit.id, entry.path)])
            if data != expected.get(entry.path):
                losses.append(f"{REPO}@{commit.id}:{entry.path} is not whole")
    # Jobs: one per finished input commit, all ended well (waiting for the last ones).
    deadline = time.monotonic() + settle
    while True:
        jobs = [j async for j in trigger.list_jobs(pipeline=PIPELINE)]
        per_commit = Counter(i.commit for j in jobs for i in j.inputs if i.repo == REPO)
        ended = all(j.ended for j in jobs)
        if (ended and set(per_commit) >= set(by_id)) or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    for cid in by_id:
        if per_commit[cid] == 0:
            losses.append(f"commit {cid} has no job: its commit.finished was not delivered")
        elif per_commit[cid] > 1:
            losses.append(f"commit {cid} has {per_commit[cid]} jobs")
    for job in jobs:
        if job.state != "success":
            losses.append(f"job {job.id} ended {job.state}: {job.reason}")
    head = {e.path: e async for e in repos.walk(PIPELINE, "master")}
    for i in tally.acknowledged:
        out = f"/f{i:04}.txt"
        if out not in head:
            losses.append(f"output of file {i} missing from {PIPELINE}@master")
    db = Database.from_url(postgres.url)
    try:
        async with db.session(write=False) as session:
            tables = (
                await session.scalars(
                    text("SELECT tablename FROM pg_tables WHERE tablename LIKE '%\\_outbox'")
                )
            ).all()
            for table in tables:
                pending = await session.scalar(
                    text(f'SELECT count(*) FROM "{table}" WHERE published_at IS NULL')
                )
                if pending:
                    losses.append(f"{pending} unpublished rows in {table}")
    finally:
        await db.dispose()
    runs = work / "runs.txt"
    return Counter(runs.read_text().split()) if runs.exists() else Counter()


async def dead_letters(kafka: KafkaBroker) -> list[str]:
    """What the consumers dead-lettered (each a lost effect unless replayed), with reasons."""
    bus = KafkaBus(kafka.bootstrap)
    try:
        subscription = await bus.subscribe([DLQ_TOPIC], group=None)
        try:
            records = await subscription.fetch(max_records=1000, max_wait=2)
        finally:
            await subscription.close()
    finally:
        await bus.close()
    letters = []
    for record in records:
        headers = {k: v.decode(errors="replace") for k, v in record.headers}
        letters.append(
            f"{headers.get('ce_type', '?')} id {headers.get('ce_id', '?')} dead-lettered by "
            f"{headers.get('dlq_group', '?')}: {headers.get('dlq_reason', '?')}"
        )
    return letters


def keep_logs(work: Path) -> Path:
    """The services' and backing servers' logs, copied where they outlive the run."""
    kept = Path(tempfile.mkdtemp(prefix="tusk-chaos-logs-"))
    for log in work.rglob("*.log"):
        target = kept / log.relative_to(work)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(log, target)
    return kept


async def run(work: Path, commits: int, rounds: int, settle: float) -> Tally:
    tally = Tally()
    kafka, postgres, s3 = KafkaBroker(num_partitions=3), PostgresServer(), S3Server()
    say("starting PostgreSQL, Kafka, versitygw and the services")
    await asyncio.gather(*(asyncio.to_thread(s.start) for s in (postgres, s3)))
    try:
        await asyncio.to_thread(kafka.start)
    except ServiceError as e:  # a JVM on a machine under a load of 50 may miss the 120 s
        say(f"Kafka did not start ({str(e).splitlines()[0]}); once more")
        await asyncio.to_thread(kafka.start)
    await asyncio.to_thread(s3.create_bucket, BUCKET)
    stack = ChaosStack(work, kafka, postgres, s3)
    await asyncio.to_thread(stack.start)
    try:
        plan = faults(stack, kafka, postgres, s3) * rounds
        every = max(1, commits // (len(plan) + 1))
        async with (
            RepoClient(stack.url("repo")) as repos,
            TriggerClient(stack.url("trigger")) as trigger,
        ):
            await repos.create_repo(REPO)
            runs = work / "runs.txt"
            spec = {
                "pipeline": {"name": PIPELINE},
                "input": {"pfs": {"repo": REPO, "glob": "/*"}},
                "transform": {
                    "cmd": [
                        "/bin/sh",
                        "-c",
                        f'echo "$TUSK_DATUM" >> {runs}; cp "$PFS_CHAOS_IN" "$TUSK_PFS_ROOT/out/"',
                    ],
                },
            }
            await trigger.create_pipeline(json.dumps(spec))
            made = 0

            async def inject_faults() -> None:
                """One fault after every ``every`` commits, each once its restart is done."""
                for n, (name, inject) in enumerate(plan, start=1):
                    while made < n * every:
                        await asyncio.sleep(0.2)
                    tally.faults.append(name)
                    say(f"after commit {made}: SIGKILL {name}, restart")
                    await asyncio.to_thread(inject)

            chaos = asyncio.create_task(inject_faults())
            started = time.monotonic()
            # Every fault lands in the stream: commits go on until the last one is over.
            while made < commits or not chaos.done():
                if made >= 3 * commits:
                    break
                await one_commit(repos, tally, made)
                made += 1
            await chaos  # a restart that failed stops the run here
            say(f"{made} commits in {time.monotonic() - started:.0f} s; checking")
            runs_per_datum = await check(repos, trigger, postgres, work, tally, settle)
            tally.losses.extend(f"event {letter}" for letter in await dead_letters(kafka))
            repeated = sum(1 for n in runs_per_datum.values() if n > 1)
            say(f"datums run more than once: {repeated} of {len(runs_per_datum)}")
    finally:
        await asyncio.to_thread(stack.stop)
        for server in (kafka, s3, postgres):
            await asyncio.to_thread(server.close if server is kafka else server.stop)
        if tally.losses:
            say(f"logs kept in {keep_logs(work)}")
    return tally


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commits", type=int, default=42)
    parser.add_argument("--rounds", type=int, default=1, help="times through the six faults")
    parser.add_argument("--settle", type=float, default=600, help="seconds for jobs to end")
    args = parser.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tusk-chaos-") as work:
        tally = asyncio.run(run(Path(work), args.commits, args.rounds, args.settle))
    print()
    print(f"faults injected: {len(tally.faults)} ({', '.join(tally.faults)})")
    print(f"commits acknowledged: {len(tally.acknowledged)}")
    print(f"requests: {tally.operations} ({tally.retries} retried through a fault)")
    print(f"losses: {len(tally.losses)}")
    for loss in tally.losses:
        print(f"  LOST {loss}")
    print(f"in {time.monotonic() - started:.0f} s; load average {os.getloadavg()[0]:.1f}")
    return 1 if tally.losses else 0


if __name__ == "__main__":
    sys.exit(main())
