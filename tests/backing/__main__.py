"""`python -m tests.backing install|smoke`: cache the backing services, or prove they all work.

install  install/cache PostgreSQL, MariaDB, bubblewrap, ImageMagick, versitygw and Kafka
         (idempotent; prints timings)
smoke    start all three, talk to each over a real connection, stop them; exit 1 on failure
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Callable

from . import bubblewrap, imagemagick, kafka, mariadb, postgres, s3
from .common import ServiceError, cache_dir


def _timed(label: str, action: Callable[[], object]) -> object:
    print(f"{label} ...", flush=True)
    started = time.monotonic()
    result = action()
    suffix = f" -> {result}" if result is not None else ""
    print(f"{label}: done in {time.monotonic() - started:.1f}s{suffix}", flush=True)
    return result


def install() -> None:
    print(f"cache: {cache_dir()}")
    _timed("PostgreSQL (Debian package)", postgres.ensure_installed)
    _timed("MariaDB (Debian package)", mariadb.ensure_installed)
    _timed("bubblewrap (Debian package)", bubblewrap.ensure_installed)
    _timed("ImageMagick (Debian package)", imagemagick.ensure_installed)
    _timed(f"versitygw {s3.VERSION} (go install)", s3.ensure_installed)
    _timed(
        f"Kafka {kafka.KAFKA_VERSION} jars (mvn dependency:copy-dependencies)",
        kafka.ensure_installed,
    )


async def _check_postgres(server: postgres.PostgresServer) -> None:
    import asyncpg  # type: ignore[import-untyped]

    # asyncpg wants a plain libpq URL, not SQLAlchemy's `postgresql+asyncpg://`.
    conn = await asyncpg.connect(server.url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        value = await conn.fetchval("select 1")
    finally:
        await conn.close()
    if value != 1:
        raise ServiceError(f"PostgreSQL answered `select 1` with {value!r}")


def _check_s3(server: s3.S3Server) -> None:
    bucket = f"tusk-smoke-{uuid.uuid4().hex[:8]}"
    server.create_bucket(bucket)
    client = server.client()
    client.put_object(Bucket=bucket, Key="smoke/hello.txt", Body=b"hello s3")
    body = client.get_object(Bucket=bucket, Key="smoke/hello.txt")["Body"].read()
    if body != b"hello s3":
        raise ServiceError(f"S3 returned {body!r} for the object just written")


async def _produce_and_consume(bootstrap: str, topic: str, group: str, payload: bytes) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, payload, partition=0)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        message = await asyncio.wait_for(consumer.getone(), timeout=60)
        await consumer.commit()
    finally:
        await consumer.stop()
    if message.value != payload:
        raise ServiceError(f"Kafka consumer got {message.value!r}, expected {payload!r}")


async def _check_kafka(broker: kafka.KafkaBroker) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic, group = f"tusk-smoke-{uuid.uuid4().hex[:8]}", "tusk-smoke"
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    await _produce_and_consume(broker.bootstrap, topic, group, b"first")
    if broker.external_bootstrap:
        return
    # Restart on the same port and log dir: the topic and the group's committed offset survive,
    # so the group now reads only the new message.
    print("  kafka: restarting the broker", flush=True)
    await asyncio.to_thread(broker.restart)
    await _produce_and_consume(broker.bootstrap, topic, group, b"second")


def smoke() -> None:
    pg, store, broker = postgres.PostgresServer(), s3.S3Server(), kafka.KafkaBroker()
    try:
        _timed("start PostgreSQL", pg.start)
        _timed("start versitygw", store.start)
        _timed("start Kafka", broker.start)
        print(f"  postgres: {pg.url}\n  s3: {store.endpoint_url}\n  kafka: {broker.bootstrap}")
        _timed("check PostgreSQL (select 1)", lambda: asyncio.run(_check_postgres(pg)))
        _timed("check S3 (bucket, put, get)", lambda: _check_s3(store))
        _timed(
            "check Kafka (topic, produce, consume, restart)",
            lambda: asyncio.run(_check_kafka(broker)),
        )
    finally:
        broker.close()
        store.stop()
        pg.stop()
    print("smoke: all backing services OK")


def main(argv: list[str]) -> int:
    commands = {"install": install, "smoke": smoke}
    if len(argv) != 1 or argv[0] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        commands[argv[0]]()
    except Exception as exc:  # report any failure as one clear message and a non-zero exit
        print(f"\ntests.backing {argv[0]} FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
