"""Crashes and outages against the real broker and PostgreSQL: nothing lost, nothing done twice.

- the repo service SIGKILLed after its SQL commit and before publishing;
- the broker stopped and restarted in the middle of 1,000 commits;
- a consumer SIGKILLed mid-batch;
- malformed and unknown events on the real ``tusk.dlq``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import Column, Integer, MetaData, String, Table, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.backing.common import LOOPBACK, ManagedProcess, free_port, port_open, wait_until
from tests.backing.kafka import KafkaBroker
from tests.events.helpers import collect, effects_table, ping, wait_for
from tests.repo.helpers import commit_files, ok
from tusk.db import Database
from tusk.events.bus import Record
from tusk.events.consumer import DLQ_REASON, EventConsumer, processed_events_table
from tusk.events.envelope import Envelope, EventData
from tusk.events.kafka import KafkaBus
from tusk.events.types import COMMITS_TOPIC, DLQ_TOPIC, CommitFinished
from tusk_repo.config import RepoSettings
from tusk_repo.context import build_context
from tusk_repo.tables import outbox

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


class RepoServiceProcess:
    """The repo service under uvicorn, as deployed: killed with SIGKILL, restarted afresh."""

    def __init__(self, run_dir: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        argv = [sys.executable, "-m", "uvicorn", "tusk_repo.app:create_app", "--factory",
                "--host", LOOPBACK, "--port", str(self.port), "--log-level", "warning"]
        self.process = ManagedProcess(f"repo-{self.port}", argv, run_dir, env=env)

    def start(self) -> None:
        self.process.start()
        wait_until(self._ready, 60, "the repo service to answer /readyz", self.process)

    def _ready(self) -> bool:
        if not port_open(LOOPBACK, self.port):
            return False
        return httpx.get(f"{self.url}/readyz").status_code == 200

    def kill(self) -> None:
        self.process.kill()


class CommitEffects:
    """A consumer service that does one thing per ``commit.finished`` of the given repos."""

    def __init__(self, bootstrap: str, url: str, repos: set[str]) -> None:
        self.metadata = MetaData()
        self.effects = Table(
            "test_commit_effects", self.metadata,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("repo", String(64), nullable=False),
            Column("commit", String(64), nullable=False),
        )
        self.db = Database.from_url(url)
        self.repos = repos
        self.consumer = EventConsumer(
            KafkaBus(bootstrap), self.db, processed_events_table("test", self.metadata),
            group=f"effects-{uuid.uuid4().hex[:8]}", topics=[COMMITS_TOPIC], handler=self.handle,
        )

    async def handle(self, session: AsyncSession, envelope: Envelope, data: EventData) -> None:
        if isinstance(data, CommitFinished) and data.repo in self.repos:
            await session.execute(self.effects.insert().values(repo=data.repo, commit=data.commit))

    async def start(self) -> None:
        async with self.db.engine.begin() as connection:
            await connection.run_sync(self.metadata.create_all)
        self.consumer.start()

    async def stop(self) -> None:
        await self.consumer.stop()
        await self.consumer.bus.close()
        await self.db.dispose()

    async def done(self) -> list[tuple[str, str]]:
        """(repo, commit) per effect, in the order they happened."""
        async with self.db.session(write=False) as session:
            rows = await session.execute(
                select(self.effects.c.repo, self.effects.c.commit).order_by(self.effects.c.id)
            )
            return [(r.repo, r.commit) for r in rows]

    async def wait_for(self, count: int, within: float = 60) -> list[tuple[str, str]]:
        for _ in range(int(within / 0.1)):
            done = await self.done()
            if len(done) >= count:
                return done
            await asyncio.sleep(0.1)
        raise AssertionError(f"{len(done)} effects after {within}s, expected {count}")


@pytest.fixture
async def effects_of(
    kafka: KafkaBroker, pg_database: str
) -> AsyncIterator[type[CommitEffects]]:
    made: list[CommitEffects] = []

    class Started(CommitEffects):
        def __init__(self, repos: set[str]) -> None:
            super().__init__(kafka.bootstrap, pg_database, repos)
            made.append(self)

    yield Started
    for effects in made:
        await effects.stop()


async def unpublished(url: str, repo: str) -> list[str]:
    db = Database.from_url(url)
    async with db.session(write=False) as session:
        rows = await session.execute(
            select(outbox.c.envelope)
            .where(outbox.c.key == repo, outbox.c.published_at.is_(None))
            .order_by(outbox.c.id)
        )
        types = [r.envelope["type"] for r in rows]
    await db.dispose()
    return types


async def test_repo_service_killed_after_commit_before_publish(
    kafka: KafkaBroker, pg_database: str, tmp_path: Path, effects_of: type[CommitEffects]
) -> None:
    repo = f"crash-{uuid.uuid4().hex[:8]}"
    env = {
        "TUSK_DATABASE_URL": pg_database,
        "TUSK_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "TUSK_DATA_DIR": str(tmp_path),
    }
    # 1. The relay is held back, so the commit lands and nothing is published; then SIGKILL.
    service = RepoServiceProcess(tmp_path, {**env, "TUSK_REPO_OUTBOX_RELAY": "false"})
    service.start()
    async with httpx.AsyncClient(base_url=service.url) as client:
        ok(await client.post("/v1/repos", json={"name": repo}), 201)
        first = await commit_files(client, repo, {"data.csv": b"1,2,3\n"})
    service.kill()
    assert await unpublished(pg_database, repo) == [
        "io.tusk.repo.created.v1", "io.tusk.commit.started.v1",
        "io.tusk.commit.finished.v1", "io.tusk.branch.moved.v1",
    ]
    effects = effects_of({repo})
    await effects.start()

    # 2. After a restart the relay publishes what was left; the consumer acts once.
    service = RepoServiceProcess(tmp_path, env)
    service.start()
    assert await effects.wait_for(1) == [(repo, first["id"])]

    # 3. Killed again in the middle of a stream of commits, whatever the relay was doing.
    made = [first["id"]]
    async with httpx.AsyncClient(base_url=service.url) as client:
        for i in range(12):
            made.append((await commit_files(client, repo, {"n": str(i).encode()}))["id"])
    service.kill()  # right after a finish returned: its events were being published
    service = RepoServiceProcess(tmp_path, env)
    service.start()
    async with httpx.AsyncClient(base_url=service.url) as client:
        for i in range(12, 20):
            made.append((await commit_files(client, repo, {"n": str(i).encode()}))["id"])
    await effects.wait_for(len(made))
    await asyncio.sleep(1)  # a redelivered duplicate would show up as an extra effect here
    assert await effects.done() == [(repo, c) for c in made]
    assert await unpublished(pg_database, repo) == []
    service.kill()


async def test_broker_restart_in_the_middle_of_1000_commits(
    kafka: KafkaBroker, pg_database: str, tmp_path: Path, effects_of: type[CommitEffects]
) -> None:
    if kafka.external_bootstrap:
        pytest.skip("needs a broker of our own to stop")
    repos = [f"outage-{uuid.uuid4().hex[:6]}-{i}" for i in range(4)]
    effects = effects_of(set(repos))
    await effects.start()
    settings = RepoSettings(
        data_dir=tmp_path, database_url=pg_database, kafka_bootstrap=kafka.bootstrap
    )
    made: dict[str, list[str]] = defaultdict(list)
    async with build_context(settings) as ctx:
        for name in repos:
            async with ctx.db.session() as session:
                await ctx.service.create_repo(session, name, "")
        stopping = starting = None
        for i in range(1000):
            if i == 200:
                stopping = asyncio.create_task(asyncio.to_thread(kafka.stop))
            if i == 500:
                assert stopping is not None
                await stopping  # the broker is down: these commits only reach the outbox
                starting = asyncio.create_task(asyncio.to_thread(kafka.start))
            name = repos[i % len(repos)]
            async with ctx.db.session() as session:
                repo = await ctx.service.get_repo(session, name)
                commit = await ctx.service.start_commit(session, repo, "master")
            async with ctx.db.session() as session:
                await ctx.service.finish_commit(session, repo, commit.id)
            made[name].append(commit.id)
        assert starting is not None
        await starting
        done = await effects.wait_for(1000, within=120)
    seen: dict[str, list[str]] = defaultdict(list)
    for name, commit_id in done:
        seen[name].append(commit_id)
    assert seen == made  # every commit.finished, once, in commit order per repo


async def committed_offsets(bootstrap: str, group: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return sum(meta.offset for meta in offsets.values() if meta.offset > 0)


async def test_consumer_killed_mid_batch_resumes_from_its_committed_offset(
    kafka: KafkaBroker, pg_database: str, tmp_path: Path, topic: str
) -> None:
    bus = KafkaBus(kafka.bootstrap, topics=())
    await bus.create_topics([topic])
    events = [ping(topic, f"k{i % 5}", i) for i in range(400)]
    await bus.publish(events)
    await bus.close()
    group = f"crash-{uuid.uuid4().hex[:8]}"
    metadata = MetaData()
    effects = effects_table(metadata)

    db = Database.from_url(pg_database)

    async def effect_rows() -> dict[str, int]:
        try:
            async with db.session(write=False) as session:
                rows = await session.execute(
                    select(effects.c.event_id, func.count()).group_by(effects.c.event_id)
                )
                return dict(rows.all())
        except Exception:  # the consumer has not made its tables yet
            return {}

    def consumer() -> ManagedProcess:
        argv = [sys.executable, "-m", "tests.events.consumer_proc", kafka.bootstrap, pg_database,
                topic, group, "0.004"]
        return ManagedProcess(f"consumer-{uuid.uuid4().hex[:6]}", argv, tmp_path,
                              cwd=Path(__file__).parents[2])

    first = consumer()
    first.start()
    counts: dict[str, int] = {}
    for _ in range(600):
        counts = await effect_rows()
        if len(counts) >= 150:
            break
        await asyncio.sleep(0.05)
    first.kill()  # SIGKILL mid-batch: effects committed in SQL, offsets not all committed
    done_before = len(await effect_rows())
    committed = await committed_offsets(kafka.bootstrap, group)
    assert 0 < committed <= done_before < len(events), (committed, done_before)

    second = consumer()
    second.start()
    for _ in range(1200):
        counts = await effect_rows()
        if len(counts) == len(events):
            break
        await asyncio.sleep(0.05)
    second.stop()  # SIGTERM: graceful, prints its counters
    stats = json.loads(second.log_tail(1))
    await db.dispose()
    assert counts == {e.id: 1 for e in events}  # no double effect
    # It resumed from the committed offsets: it skipped only what was done but not committed.
    assert stats == {"handled": len(events) - done_before, "duplicates": done_before - committed}


async def test_malformed_and_unknown_events_land_in_the_dlq(
    kafka: KafkaBroker, tmp_path: Path, topic: str
) -> None:
    bus = KafkaBus(kafka.bootstrap)  # creates tusk.dlq among its topics
    await bus.create_topics([topic])
    await bus.start()
    await bus.publish_records([
        Record(topic=topic, key=b"k", value=b"not json", headers=(("ce_id", b"1"),)),
        Record(topic=topic, key=b"k", value=b"{}", headers=(
            ("ce_specversion", b"1.0"), ("ce_id", b"2"), ("ce_source", b"x"),
            ("ce_type", b"io.tusk.unheard.of.v1"),
        )),
    ])
    await bus.publish([ping(topic, "k", 1)])
    metadata = MetaData()
    db = Database.from_url(f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
    processed = processed_events_table("test", metadata)
    async with db.engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    handled: list[int] = []

    async def handle(session: AsyncSession, envelope: Envelope, data: EventData) -> None:
        handled.append(envelope.data["seq"])

    consumer = EventConsumer(bus, db, processed, group="dlq-test", topics=[topic], handler=handle)
    consumer.start()
    await wait_for(lambda: handled == [1], what="the good event after two bad ones")
    await consumer.stop()
    dlq = await bus.subscribe([DLQ_TOPIC], group=None)
    letters = [
        r for r in await collect(dlq, 1000, within=3) if r.header("dlq_topic") == topic.encode()
    ]
    await dlq.close()
    await bus.close()
    await db.dispose()
    assert [r.value for r in letters] == [b"not json", b"{}"]
    reasons = [(r.header(DLQ_REASON) or b"").decode() for r in letters]
    assert reasons[0].startswith("not a CloudEvent: missing header(s)")
    assert reasons[1] == "unknown event type 'io.tusk.unheard.of.v1'"
