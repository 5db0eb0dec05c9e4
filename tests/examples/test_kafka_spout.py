"""examples/kafka-spout against the real Kafka of tests.backing, with every service embedded:
the spout's messages become commits in its output repo; killed, it is started again and goes on
where it stopped; deleting the pipeline stops it."""

from __future__ import annotations

import os
import signal
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.backing.kafka import KafkaBroker
from tests.cli.conftest import free_port
from tests.scheduler.helpers import pid_alive, wait_until
from tests.sdk.conftest import embedded_in_thread
from tusk.client import RepoClient
from tusk.client.pipelines import TriggerClient
from tusk.errors import NotFound
from tusk_inference.config import InferenceSettings
from tusk_repo.config import RepoSettings
from tusk_scheduler.config import SchedulerSettings
from tusk_stack.embedded import EmbeddedSettings
from tusk_trigger.config import TriggerSettings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "kafka-spout"


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """`tusk up` on free ports, running commands from the project's root."""
    # The example's `python3` is this interpreter (with aiokafka and tusk), as in its image.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    ports = {name: free_port() for name in ("repo", "trigger", "scheduler", "inference")}
    settings = EmbeddedSettings(
        repo=RepoSettings(data_dir=tmp_path, TUSK_REPO_PORT=ports["repo"]),  # type: ignore[call-arg]
        trigger=TriggerSettings(data_dir=tmp_path, TUSK_TRIGGER_PORT=ports["trigger"]),  # type: ignore[call-arg]
        scheduler=SchedulerSettings(  # type: ignore[call-arg]
            data_dir=tmp_path, TUSK_SCHEDULER_PORT=ports["scheduler"],
            TUSK_SCHEDULER_CODE_DIR=str(ROOT), TUSK_SCHEDULER_SPOUT_INTERVAL=0.2,
        ),
        inference=InferenceSettings(data_dir=tmp_path, TUSK_INFERENCE_PORT=ports["inference"]),  # type: ignore[call-arg]
    )  # fmt: skip

    running = embedded_in_thread(settings)
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    try:
        running.wait_until_serving(f"{urls['repo']}/healthz", f"{urls['trigger']}/healthz")
        yield urls
    finally:
        running.close()


def spout_processes(pipeline: str) -> list[int]:
    """Live processes started for the spout (their environment names it)."""
    marker = f"TUSK_SPOUT={pipeline}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            if marker in environ.split(b"\0") and pid_alive(int(entry.name)):
                found.append(int(entry.name))
    return found


async def send(kafka: KafkaBroker, topic: str, messages: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap)
    await producer.start()
    try:
        for message in messages:
            await producer.send_and_wait(topic, message, partition=0)
    finally:
        await producer.stop()


async def test_a_topic_flows_into_the_repo_through_restarts(
    kafka: KafkaBroker, stack: dict[str, str]
) -> None:
    topic = f"events-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    spec = yaml.safe_load((EXAMPLE / "pipeline.yaml").read_text())
    name = f"spout-{uuid.uuid4().hex[:8]}"
    spec["pipeline"]["name"] = name
    spec["transform"]["env"].update(KAFKA_BOOTSTRAP=kafka.bootstrap, KAFKA_TOPIC=topic)

    async with (
        TriggerClient(stack["trigger"]) as triggers,
        RepoClient(stack["repo"]) as repos,
    ):
        created = await triggers.create_pipeline(yaml.safe_dump(spec))
        assert created.warnings == []
        await send(kafka, topic, [f"message {i}".encode() for i in range(5)])

        async def files() -> dict[str, bytes]:
            try:
                found = await repos.glob(name, "master", f"/{topic}/0/*")
            except NotFound:  # no commit yet
                return {}
            return {
                f.path: b"".join([p async for p in repos.get_file(name, "master", f.path)])
                for f in found
            }

        async def has(count: int) -> bool:
            return len(await files()) >= count

        await wait_until(lambda: has(5), within=120, what="the first messages in the repo")
        assert (await files())[f"/{topic}/0/{0:020d}"] == b"message 0"
        assert not [j async for j in triggers.list_jobs(pipeline=name)]  # a spout has no jobs

        # Killed (as a crash would): started again, it reads on from its committed offset.
        (first,) = spout_processes(name)
        os.kill(first, signal.SIGKILL)
        await send(kafka, topic, [f"message {i}".encode() for i in range(5, 8)])
        await wait_until(lambda: has(8), within=180, what="messages after the restart")
        content = await files()
        assert sorted(content) == [f"/{topic}/0/{i:020d}" for i in range(8)]
        assert content[f"/{topic}/0/{7:020d}"] == b"message 7"
        assert spout_processes(name) != [first]

        await triggers.delete_pipeline(name)

        async def stopped() -> bool:
            return not spout_processes(name)

        await wait_until(stopped, within=120, what="the spout to stop")
