"""``tusk events tail`` against the real broker."""

from __future__ import annotations

import asyncio
import json

import pytest
from typer.testing import CliRunner

from tests.backing.common import free_port
from tests.backing.kafka import KafkaBroker
from tests.events.helpers import ping
from tusk.events.bus import Record
from tusk.events.kafka import KafkaBus
from tusk_cli.events import app


async def _publish(bootstrap: str, topic: str) -> list[str]:
    bus = KafkaBus(bootstrap, topics=())
    await bus.create_topics([topic])
    events = [ping(topic, "k", 0), ping(topic, "k", 1)]
    await bus.publish(events)
    await bus.publish_records([Record(topic=topic, key=b"k", value=b"garbage")])
    await bus.close()
    return [e.id for e in events]


@pytest.mark.kafka
def test_tail_shows_events_and_bad_records(kafka: KafkaBroker, topic: str) -> None:
    ids = asyncio.run(_publish(kafka.bootstrap, topic))
    runner = CliRunner()
    env = {"TUSK_KAFKA_BOOTSTRAP": kafka.bootstrap}
    args = ["tail", "--topic", topic, "--from-beginning", "--count", "3"]

    result = runner.invoke(app, [*args, "--json"], env=env)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["event"]["id"] for line in lines[:2]] == ids
    assert lines[0]["event"]["data"] == {"name": "k", "seq": 0, "fail": None}
    assert lines[2]["error"].startswith("not a CloudEvent")
    assert lines[2]["value"] == "garbage"

    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    human = result.stdout.splitlines()
    assert f"{topic}[" in human[0]
    assert "io.tusk.test.ping.v1" in human[0]
    assert "not an event" in human[2]


def test_tail_without_kafka_follows_the_repo_service_and_says_when_it_cannot() -> None:
    # Without Kafka the feed comes from `tusk up`'s repo service; none listens here.
    url = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(
        app, ["tail"], env={"TUSK_KAFKA_BOOTSTRAP": "", "TUSK_REPO_URL": url}
    )
    assert result.exit_code == 1
    assert f"cannot reach the repo service at {url}" in result.output
