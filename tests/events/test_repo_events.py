"""The repo service announces each change on the bus it is given, as it happened."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.events.helpers import collect, drain
from tests.repo.helpers import commit_files, ok
from tusk.events.bus import decode
from tusk.events.factory import open_event_bus
from tusk.events.kafka import KafkaBus
from tusk.events.memory import MemoryBus
from tusk.events.types import (
    COMMITS_TOPIC,
    REPOS_TOPIC,
    BranchMoved,
    CommitFinished,
    CommitStarted,
    RepoCreated,
    RepoDeleted,
)
from tusk.settings import CommonSettings
from tusk_repo.app import create_app
from tusk_repo.config import RepoSettings
from tusk_repo.context import build_context


async def test_repo_service_events_on_a_shared_memory_bus(tmp_path: Path) -> None:
    shared = MemoryBus()  # as `tusk up` makes one for all its services
    reader = await shared.subscribe([REPOS_TOPIC, COMMITS_TOPIC], group="another-service")
    settings = RepoSettings(data_dir=tmp_path)
    async with build_context(settings, bus=shared) as context:
        assert context.bus is shared
        transport = httpx.ASGITransport(app=create_app(context=context))
        async with httpx.AsyncClient(transport=transport, base_url="http://repo") as client:
            ok(await client.post("/v1/repos", json={"name": "raw"}), 201)
            ok(await client.post("/v1/repos", json={"name": "out"}), 201)
            first = await commit_files(client, "raw", {"a.csv": b"1,2\n", "b.csv": b"3\n"})
            derived = await commit_files(
                client, "out", {"x": b"x"},
                provenance=[{"repo": "raw", "commit": first["id"]}],
            )
            ok(await client.delete("/v1/repos/out"), 204)
        records = await collect(reader, 9, within=60)
    records += await drain(reader, quiet=0.3)
    await reader.close()

    events = [decode(r).payload() for r in records]
    # Order holds per key within a topic (tusk.repos and tusk.commits are read side by side).
    in_order = {
        (repo, topic): [type(e).__name__ for e in events if e.key() == repo and e.topic == topic]
        for repo in ("raw", "out")
        for topic in (REPOS_TOPIC, COMMITS_TOPIC)
    }
    assert in_order == {
        ("raw", REPOS_TOPIC): ["RepoCreated"],
        ("raw", COMMITS_TOPIC): ["CommitStarted", "CommitFinished", "BranchMoved"],
        ("out", REPOS_TOPIC): ["RepoCreated", "RepoDeleted"],
        ("out", COMMITS_TOPIC): ["CommitStarted", "CommitFinished", "BranchMoved"],
    }
    [finished] = [e for e in events if isinstance(e, CommitFinished) and e.repo == "raw"]
    assert (finished.commit, finished.size_bytes, finished.file_count) == (first["id"], 6, 2)
    assert finished.global_id == first["id"]
    [derived_finished] = [e for e in events if isinstance(e, CommitFinished) and e.repo == "out"]
    assert derived_finished.commit == derived["id"]
    assert [(p.repo, p.commit) for p in derived_finished.provenance] == [("raw", first["id"])]
    [moved] = [e for e in events if isinstance(e, BranchMoved) and e.repo == "raw"]
    assert (moved.branch, moved.head, moved.previous) == ("master", first["id"], None)
    assert {type(e) for e in events} == {
        RepoCreated, CommitStarted, CommitFinished, BranchMoved, RepoDeleted
    }
    envelope = decode(records[0])
    assert (envelope.source, envelope.subject, envelope.key) == ("tusk/repo", "raw", "raw")

    # The shared bus belongs to its maker: the service left it open.
    await shared.publish([decode(records[0])])


async def test_the_bus_follows_the_settings() -> None:
    async with open_event_bus(CommonSettings(kafka_bootstrap="127.0.0.1:1")) as bus:
        assert isinstance(bus, KafkaBus)  # connects lazily: no broker needed to start
    async with open_event_bus(CommonSettings(kafka_partitions=5)) as bus:
        assert isinstance(bus, MemoryBus)
        assert bus.partitions == 5
