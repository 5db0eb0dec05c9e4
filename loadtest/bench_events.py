"""The event backbone's speed targets (issue 3), each against raw aiokafka in the same run.

    .venv/bin/python -m loadtest.bench_events [--commits N] [--backlog N] [--json OUT]

Starts Kafka and PostgreSQL (``tests.backing``), runs the repo service as its own uvicorn
process (PostgreSQL + Kafka, its outbox relay on), and measures:

1. latency: from a commit's finish returning (``POST …/finish`` answered) to a consumer in
   another process receiving its ``commit.finished`` (an ``EventConsumer`` with its
   processed-events table on PostgreSQL; the time is taken when the handler is called).
   Commits are made one at a time, paced, so this is latency, not throughput.
   Baseline: raw aiokafka, ``send()`` (acks=all, idempotent) to a raw ``AIOKafkaConsumer`` in
   another process, paced the same way.
2. relay throughput: a backlog of outbox rows (written while no relay ran) published by
   ``OutboxRelay.publish_pending`` and marked. Baseline: the same records (same bytes and
   headers) sent by a raw aiokafka producer with the same settings, all acknowledged.

Both processes stamp times with the same wall clock (``time.time_ns``) on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):  # run as `python loadtest/bench_events.py`: make the root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncSession

from loadtest.report import Figure, Report, environment, percentile, print_table, say
from tests.backing.common import LOOPBACK, ManagedProcess, free_port, port_open, wait_until
from tests.backing.kafka import KAFKA_VERSION, KafkaBroker
from tests.backing.postgres import PostgresServer
from tusk.db import Database, migrate
from tusk.events.bus import encode
from tusk.events.consumer import EventConsumer, processed_events_table
from tusk.events.envelope import Envelope, EventData
from tusk.events.kafka import KafkaBus
from tusk.events.outbox import OutboxWriter
from tusk.events.relay import OutboxRelay
from tusk.events.types import COMMITS_TOPIC, CommitFinished
from tusk_repo.tables import outbox

PACE = 0.02  # seconds between two measured commits (or raw messages)
WARMUP = 20


# --- the consumers, each in a process of its own ---------------------------------------------


async def tusk_consumer(bootstrap: str, database_url: str) -> None:
    """Prints ``<commit id> <time_ns>`` for each commit.finished its handler receives."""
    metadata = MetaData()
    processed = processed_events_table("bench", metadata)
    db = Database.from_url(database_url)
    async with db.engine.begin() as connection:
        await connection.run_sync(metadata.create_all)

    async def handle(session: AsyncSession, envelope: Envelope, data: EventData) -> None:
        if isinstance(data, CommitFinished):
            print(data.commit, time.time_ns(), flush=True)

    consumer = EventConsumer(
        KafkaBus(bootstrap),
        db,
        processed,
        group=f"bench-{uuid.uuid4().hex[:8]}",
        topics=[COMMITS_TOPIC],
        handler=handle,
    )
    await consumer.run()


async def raw_consumer(bootstrap: str, topic: str) -> None:
    """Prints ``<message value> <time_ns>`` for each message."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"raw-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    while True:
        batches = await consumer.getmany(timeout_ms=500)
        now = time.time_ns()
        for messages in batches.values():
            for m in messages:
                print(m.value.decode(), now, flush=True)
        if batches:
            await consumer.commit()


class ConsumerProcess:
    """A consumer subprocess and the receive times it reports on stdout."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.received: dict[str, int] = {}
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ConsumerProcess:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "loadtest.bench_events",
            *self.args,
            stdout=asyncio.subprocess.PIPE,
            cwd=Path(__file__).resolve().parents[1],
        )
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self._proc is not None
        assert self._proc.stdout is not None
        async for line in self._proc.stdout:
            fields = line.decode().split()
            if len(fields) == 2 and fields[1].isdigit():  # not a log line
                self.received.setdefault(fields[0], int(fields[1]))

    async def wait_for(self, keys: list[str], within: float = 60) -> None:
        deadline = time.monotonic() + within
        while not all(k in self.received for k in keys):
            if time.monotonic() > deadline:
                missing = sum(k not in self.received for k in keys)
                raise RuntimeError(f"the consumer did not receive {missing} of {len(keys)}")
            await asyncio.sleep(0.05)

    async def __aexit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.kill()
            await self._proc.wait()
        if self._reader is not None:
            self._reader.cancel()


def latencies_ms(sent: dict[str, int], consumer: ConsumerProcess) -> list[float]:
    return [(consumer.received[k] - t) / 1e6 for k, t in sent.items()]


# --- 1. latency ------------------------------------------------------------------------------


@asynccontextmanager
async def repo_service(work: Path, database_url: str, bootstrap: str) -> AsyncIterator[str]:
    port = free_port()
    process = ManagedProcess(
        "repo",
        [
            sys.executable,
            "-m",
            "uvicorn",
            "tusk_repo.app:create_app",
            "--factory",
            "--host",
            LOOPBACK,
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        work,
        env={
            "TUSK_DATABASE_URL": database_url,
            "TUSK_KAFKA_BOOTSTRAP": bootstrap,
            "TUSK_DATA_DIR": str(work),
            "TUSK_LOG_LEVEL": "WARNING",
        },
    )
    process.start()
    url = f"http://{LOOPBACK}:{port}"
    try:
        wait_until(
            lambda: port_open(LOOPBACK, port) and httpx.get(f"{url}/readyz").is_success,
            60,
            "the repo service",
            process,
        )
        yield url
    finally:
        process.stop()


async def bench_latency(
    report: Report, work: Path, database_url: str, bootstrap: str, commits: int
) -> None:
    say(f"latency: {commits} commits, one every {PACE * 1000:.0f} ms")
    async with (
        repo_service(work, database_url, bootstrap) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
        ConsumerProcess("tusk-consumer", bootstrap, database_url) as consumer,
    ):
        (await http.post("/v1/repos", json={"name": "bench"})).raise_for_status()

        async def one_commit() -> tuple[str, int]:
            start = await http.post("/v1/repos/bench/commits", json={"branch": "master"})
            commit = start.raise_for_status().json()["id"]
            (await http.post(f"/v1/repos/bench/commits/{commit}/finish")).raise_for_status()
            return commit, time.time_ns()

        warm = [(await one_commit())[0] for _ in range(WARMUP)]  # the group joins meanwhile
        await consumer.wait_for(warm)
        sent: dict[str, int] = {}
        for _ in range(commits):
            commit, finished = await one_commit()
            sent[commit] = finished
            await asyncio.sleep(PACE)
        await consumer.wait_for(list(sent))
        tusk = latencies_ms(sent, consumer)

    say(f"baseline: {commits} raw aiokafka messages, one every {PACE * 1000:.0f} ms")
    topic = f"bench.raw.{uuid.uuid4().hex[:8]}"
    await KafkaBus(bootstrap, topics=()).create_topics([topic])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        async with ConsumerProcess("raw-consumer", bootstrap, topic) as consumer:
            warm = [f"warm-{i}" for i in range(WARMUP)]
            for key in warm:
                await producer.send_and_wait(topic, key.encode(), key=b"bench")
            await consumer.wait_for(warm)
            sent = {}
            for i in range(commits):
                key = f"m-{i}"
                sent[key] = time.time_ns()
                await producer.send(topic, key.encode(), key=b"bench")
                await asyncio.sleep(PACE)
            await consumer.wait_for(list(sent))
            raw = latencies_ms(sent, consumer)
    finally:
        await producer.stop()

    for name, p, target in (("p50", 50, 20.0), ("p99", 99, 100.0)):
        ours, base = percentile(tusk, p), percentile(raw, p)
        report.add(
            Figure(
                f"commit finish -> consumer, {name}",
                ours,
                "ms",
                f"<= {target:g} ms",
                ours <= target,
                f"raw aiokafka produce -> consume, {name}",
                base,
                ours / base if base > 0 else None,
            )
        )
    report.details["latency_ms"] = {
        "tusk": {
            "min": min(tusk),
            "mean": statistics.fmean(tusk),
            "max": max(tusk),
            "series": tusk,
        },
        "raw": {"min": min(raw), "mean": statistics.fmean(raw), "max": max(raw), "series": raw},
    }


# --- 2. relay throughput ---------------------------------------------------------------------


def sample_event(i: int) -> CommitFinished:
    commit = uuid.uuid4().hex
    return CommitFinished(
        repo=f"repo-{i % 16}",
        commit=commit,
        branch="master",
        parent=None,
        global_id=commit,
        finished_at=datetime.now(UTC),
        size_bytes=1234 * i,
        file_count=i,
    )


async def timed(action: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await action()
    return time.perf_counter() - started


async def bench_relay(report: Report, database_url: str, bootstrap: str, backlog: int) -> None:
    say(f"relay: a backlog of {backlog:,} outbox rows")
    db = Database.from_url(database_url)
    writer = OutboxWriter(outbox, "bench")
    envelopes: list[Envelope] = []
    for start in range(0, backlog, 1000):
        async with db.session() as session:
            events = [sample_event(i) for i in range(start, min(start + 1000, backlog))]
            envelopes += await writer.add(session, *events)
    bus = KafkaBus(bootstrap)
    await bus.start()
    relay = OutboxRelay(db, outbox, bus)
    seconds = await timed(relay.publish_pending)
    assert relay.published >= backlog, relay.published
    await bus.close()
    await db.dispose()

    say(f"baseline: {backlog:,} raw aiokafka sends of the same records")
    records = [encode(e) for e in envelopes]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()

    async def send_all() -> None:
        futures = [
            await producer.send(r.topic, r.value, key=r.key, headers=list(r.headers))
            for r in records
        ]
        await asyncio.gather(*futures)

    try:
        raw_seconds = await timed(send_all)
    finally:
        await producer.stop()
    ours, base = backlog / seconds, backlog / raw_seconds
    report.add(
        Figure(
            "relay throughput",
            ours,
            "events/s",
            ">= 2,000 events/s",
            ours >= 2000,
            "raw aiokafka producer",
            base,
            ours / base,
        )
    )


# --- running it ------------------------------------------------------------------------------


async def run(work: Path, commits: int, backlog: int) -> Report:
    report = Report()
    kafka, postgres = KafkaBroker(num_partitions=3), PostgresServer()
    say("starting Kafka and PostgreSQL")
    try:
        await asyncio.gather(asyncio.to_thread(kafka.start), asyncio.to_thread(postgres.start))
        report.environment = environment(kafka=KAFKA_VERSION)
        await migrate(postgres.url)
        await bench_latency(report, work, postgres.url, kafka.bootstrap, commits)
        await bench_relay(report, postgres.url, kafka.bootstrap, backlog)
    finally:
        await asyncio.to_thread(kafka.close)
        await asyncio.to_thread(postgres.stop)
    report.environment["load_average_after"] = os.getloadavg()
    return report


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["tusk-consumer"]:
        asyncio.run(tusk_consumer(*argv[1:]))
        return 0
    if argv[:1] == ["raw-consumer"]:
        asyncio.run(raw_consumer(*argv[1:]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commits", type=int, default=500, help="measured commits (and messages)")
    parser.add_argument("--backlog", type=int, default=20_000, help="outbox rows for the relay")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the results here")
    args = parser.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tusk-bench-events-") as work:
        report = asyncio.run(run(Path(work), args.commits, args.backlog))
    report.details["total_seconds"] = time.monotonic() - started
    print()
    print_table(
        report,
        f"Kafka {report.environment['kafka']} (one KRaft node), PostgreSQL (fsync off)",
        decimals=1,
    )
    say(f"done in {report.details['total_seconds']:.0f} s")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "environment": report.environment,
                    "figures": [asdict(f) for f in report.figures],
                    "details": report.details,
                },
                indent=2,
            )
        )
    return 0 if all(f.met is not False for f in report.figures) else 1


if __name__ == "__main__":
    sys.exit(main())
