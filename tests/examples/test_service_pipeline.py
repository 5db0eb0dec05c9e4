"""Service pipelines (Pachyderm's ``service``): the command serves its input's latest commit on
its port, in the sandbox at /pfs/<input>; a new input commit restarts it on the new data;
deleting the pipeline stops it. Every service embedded, as `tusk up` runs them."""

from __future__ import annotations

import json

import httpx

from tests.cli.conftest import free_port
from tests.examples.test_kafka_spout import spout_processes, stack
from tests.scheduler.helpers import wait_until
from tusk.client import RepoClient
from tusk.client.pipelines import SchedulerClient, TriggerClient

__all__ = ["stack"]  # the embedded services, shared with the spout's test


async def test_a_service_serves_its_latest_input(stack: dict[str, str]) -> None:
    port = free_port()
    spec = {
        "pipeline": {"name": "web"},
        "input": {"pfs": {"repo": "site", "glob": "/"}},
        "transform": {
            "cmd": ["sh", "-c", 'exec python3 -m http.server "$TUSK_SERVICE_PORT" '
                    '--bind 127.0.0.1 --directory "$site"'],
        },
        "service": {"internal_port": port, "external_port": 30000 + port % 1000},
    }  # fmt: skip
    url = f"http://127.0.0.1:{port}/index.html"

    async def serving(expected: bytes) -> bool:
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                response = await client.get(url)
        except httpx.TransportError:
            return False
        return response.status_code == 200 and response.content == expected

    async with TriggerClient(stack["trigger"]) as triggers, RepoClient(stack["repo"]) as repos:
        await repos.create_repo("site")
        created = await triggers.create_pipeline(json.dumps(spec))
        # external_port is a Kubernetes Service's; said so, as it has no effect here.
        assert [w.split(":")[0] for w in created.warnings] == ["service.external_port"]
        first = await repos.start_commit("site", "master")
        await repos.put_file("site", first.id, "/index.html", b"version 1")
        await repos.finish_commit("site", first.id)
        await wait_until(lambda: serving(b"version 1"), within=120, what="version 1 served")
        first_run = set(spout_processes("web"))  # bwrap, and the command inside it
        assert first_run
        # Where it runs, as `tusk pipeline inspect` and `tusk logs -p web` say.
        async with SchedulerClient(stack["scheduler"]) as scheduler:
            place = await scheduler.spout("web")
            assert (place.kind, place.runner, place.running) == ("service", "local", True)
            assert place.pid in first_run
            assert place.log_path is not None
            assert place.log_path.endswith("web.log")

        second = await repos.start_commit("site", "master")
        await repos.put_file("site", second.id, "/index.html", b"version 2")
        await repos.finish_commit("site", second.id)
        await wait_until(lambda: serving(b"version 2"), within=120, what="version 2 served")
        assert not first_run & set(spout_processes("web"))
        assert not [j async for j in triggers.list_jobs(pipeline="web")]

        await triggers.delete_pipeline("web")

        async def gone() -> bool:
            return not spout_processes("web") and not await serving(b"version 2")

        await wait_until(gone, within=120, what="the service to stop")


async def test_a_spout_with_a_service_serves_on_its_port(stack: dict[str, str]) -> None:
    """``spout.service``: the spout's command is told its port (a webhook receiver's, say)."""
    port = free_port()
    spec = {
        "pipeline": {"name": "hooks"},
        "spout": {"service": {"internal_port": port}},
        "transform": {
            "cmd": ["sh", "-c", 'exec python3 -m http.server "$TUSK_SERVICE_PORT" '
                    '--bind 127.0.0.1 --directory /'],
        },
    }  # fmt: skip

    async def serving() -> bool:
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                return (await client.get(f"http://127.0.0.1:{port}/")).status_code == 200
        except httpx.TransportError:
            return False

    async with TriggerClient(stack["trigger"]) as triggers:
        created = await triggers.create_pipeline(json.dumps(spec))
        assert created.warnings == []
        await wait_until(serving, within=120, what="the spout serving on its port")
        await triggers.delete_pipeline("hooks")

        async def stopped() -> bool:
            return not await serving()

        await wait_until(stopped, within=120, what="the spout to stop serving")
