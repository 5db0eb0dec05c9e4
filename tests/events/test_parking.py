"""An outbox is never blocked by one row: a row the broker can never take is parked with its
reason (listed, counted, replayable) and the rows after it flow."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI, Request
from sqlalchemy import Table

from tests.backing.kafka import KafkaBroker
from tests.events.helpers import Ping, collect, drain, seqs
from tests.events.test_relay import outbox_db, write  # noqa: F401 (fixture)
from tusk.api import add_common_middleware, install_error_handlers
from tusk.db import Database
from tusk.events.bus import EventBus
from tusk.events.envelope import Envelope
from tusk.events.kafka import KafkaBus
from tusk.events.memory import MemoryBus
from tusk.events.outbox import OutboxWriter
from tusk.events.parking import add_outbox_routes
from tusk.events.relay import OutboxRelay
from tusk.events.types import InputCommit, JobCreatedV1

TOPIC = Ping.topic


def job_created(description_chars: int) -> JobCreatedV1:
    """The job event of the probe's spec: a description of 'é' * n (non-ASCII, 2 bytes each).
    Today's ``job.created`` names its spec; the v1 event, which carried it, is the large
    record these tests need (and one an older trigger may still have in its outbox)."""
    return JobCreatedV1(
        job=uuid.uuid4().hex,
        pipeline="p",
        version=1,
        spec={"pipeline": {"name": "p"}, "description": "é" * description_chars},
        inputs=(InputCommit(name="in", repo="in", branch="master", commit=uuid.uuid4().hex),),
        global_id=uuid.uuid4().hex,
        output_repo="p",
        output_branch="master",
        created_at=datetime.now(UTC),
    )


async def test_an_oversized_row_is_parked_and_the_rest_flows(
    outbox_db: tuple[str, Table],  # noqa: F811
) -> None:
    url, table = outbox_db
    db, bus = Database.from_url(url), MemoryBus(partitions=1)
    writer = OutboxWriter(table, "tests")
    await write(db, writer, Ping(name="a", seq=1))
    await write(db, writer, Ping(name="a", seq=2, fail="é" * 3000))  # 6 kB once encoded
    await write(db, writer, Ping(name="a", seq=3))
    relay = OutboxRelay(db, table, bus, max_record_bytes=4096)
    sub = await bus.subscribe([TOPIC], group=None)
    try:
        assert await relay.publish_pending() == 3
        assert seqs(await collect(sub, 2, within=10)) == [("a", 1), ("a", 3)]
        parked = await relay.list_parked()
        assert [p.type for p in parked] == [Ping.type]
        assert "TUSK_MAX_EVENT_BYTES" in parked[0].reason
        assert parked[0].size_bytes > 4096
        assert await relay.count_parked() == 1
        assert relay.parked_rows._value.get() == 1  # the gauge behind tusk_outbox_parked_rows

        # Later rows are not held back, across passes and relays.
        await write(db, writer, Ping(name="a", seq=4))
        assert await OutboxRelay(db, table, bus, max_record_bytes=4096).publish_pending() == 1
        assert seqs(await collect(sub, 1, within=10)) == [("a", 4)]

        # The cause fixed (a larger limit), the row is replayed and goes out.
        relay.max_record_bytes = 1_000_000
        assert await relay.replay(parked[0].id) == 1
        assert await relay.publish_pending() == 1
        assert [seq for _, seq in seqs(await collect(sub, 1, within=10))] == [2]
        assert await relay.count_parked() == 0
    finally:
        await sub.close()
        await db.dispose()


async def test_parked_rows_are_served_and_replayed_over_http(
    outbox_db: tuple[str, Table],  # noqa: F811
) -> None:
    url, table = outbox_db
    db, bus = Database.from_url(url), MemoryBus(partitions=1)
    writer = OutboxWriter(table, "tests")
    await write(db, writer, Ping(name="x", seq=1, fail="x" * 5000))
    relay = OutboxRelay(db, table, bus, max_record_bytes=4096)
    await relay.publish_pending()
    app = FastAPI()
    install_error_handlers(app)
    add_common_middleware(app, [])  # auth off: the caller is an administrator

    def relay_of(_request: Request) -> OutboxRelay:
        return relay

    add_outbox_routes(app, relay_of, serve_metrics=True)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            listing = (await client.get("/v1/outbox/parked")).json()
            assert listing["count"] == 1
            assert "over the 4096-byte limit" in listing["items"][0]["reason"]
            metrics = (await client.get("/metrics")).text
            assert f'tusk_outbox_parked_rows{{table="{table.name}"}} 1.0' in metrics
            row = listing["items"][0]["id"]
            assert (await client.post("/v1/outbox/parked/999999/replay")).status_code == 404
            replayed = await client.post(f"/v1/outbox/parked/{row}/replay")
            assert replayed.json() == {"replayed": 1}
            await relay.publish_pending()  # still too large: parked again, with its reason
            assert (await client.get("/v1/outbox/parked")).json()["count"] == 1
    finally:
        await db.dispose()


@pytest.fixture
async def kafka_bus(kafka: KafkaBroker) -> AsyncIterator[EventBus]:
    bus = KafkaBus(kafka.bootstrap, partitions=1, topics=(TOPIC, JobCreatedV1.topic))
    yield bus
    await bus.close()


@pytest.mark.kafka
async def test_the_probes_spec_on_kafka_flows_and_a_record_kafka_refuses_is_parked(
    outbox_db: tuple[str, Table],  # noqa: F811
    kafka_bus: EventBus,
) -> None:
    """The ~680 KB non-ASCII spec (a description of 'é' * 340000) once made a 2 MB event that
    Kafka refused forever, blocking every later event. Now it is sent as UTF-8 (under 1 MB);
    and an event Kafka still refuses (over its own 1 MiB) is parked while the rest flows."""
    url, table = outbox_db
    db = Database.from_url(url)
    writer = OutboxWriter(table, "tests")
    probe = job_created(340_000)
    too_big = job_created(600_000)  # 1.2 MB even as UTF-8
    async with db.session() as session:
        envelopes = await writer.add(session, probe, too_big)
        follower = Envelope.wrap(Ping(name="after", seq=1), source="tests")
        await writer.add(session, Ping(name="after", seq=1))
    # No size check of our own: Kafka itself refuses, and the relay finds the row that fails.
    relay = OutboxRelay(db, table, kafka_bus, max_record_bytes=50_000_000)
    # From the end: the topics are shared by every test on the session's broker.
    jobs = await kafka_bus.subscribe([JobCreatedV1.topic], group=None, from_beginning=False)
    pings = await kafka_bus.subscribe([TOPIC], group=None, from_beginning=False)
    try:
        assert await relay.publish_pending() == 3
        got_jobs = await collect(jobs, 1, within=60)
        assert [r.header("ce_id") for r in got_jobs] == [envelopes[0].id.encode()]
        assert len(got_jobs[0].value or b"") < 1_000_000  # UTF-8, not \u00e9 escapes
        assert seqs(await collect(pings, 1, within=60)) == [(follower.data["name"], 1)]
        parked = await relay.list_parked()
        assert [p.event_id for p in parked] == [envelopes[1].id]
        assert "Kafka refused the record" in parked[0].reason
        # Finding the culprit may send the probe's event twice (at-least-once; consumers drop
        # duplicates by id), never the refused one.
        later = {r.header("ce_id") for r in await drain(jobs, quiet=1.0)}
        assert later <= {envelopes[0].id.encode()}
    finally:
        await jobs.close()
        await pings.close()
        await db.dispose()
