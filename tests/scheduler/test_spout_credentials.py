"""A spout on the local runner when the services check tokens: its command gets a credential of
its own (never the scheduler's), commits with it into its output repo and nowhere else, and the
credential is revoked when the spout is stopped."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.scheduler.conftest import scheduler_settings
from tests.scheduler.helpers import unique, wait_until
from tests.scheduler.spout_helpers import PipelineList
from tests.scheduler.test_worker_credentials import ROOT, secured_repo_url
from tusk.client import RepoClient
from tusk.errors import NotFound, Unauthorized
from tusk.pipelines import PipelineSpec
from tusk_scheduler.background.spouts import SpoutSupervisor

__all__ = ["secured_repo_url"]

# Commits once with the SDK, tries a repo that is not its own, then stays up as a spout does.
PROGRAM = r"""
import asyncio, os, pathlib, sys
from tusk.client import RepoClient
from tusk.errors import Forbidden
from tusk.worker.spout import spout_commit
report = pathlib.Path(sys.argv[1])
async def main():
    async with spout_commit("first") as commit:
        await commit.put("/hello.txt", b"from the spout")
    async with RepoClient(os.environ["TUSK_REPO_URL"], os.environ.get("TUSK_TOKEN")) as c:
        try:
            await c.start_commit(sys.argv[2], "master")
            elsewhere = "allowed"
        except Forbidden:
            elsewhere = "forbidden"
    report.write_text(os.environ.get("TUSK_TOKEN", "") + "\n" + elsewhere)
    await asyncio.Event().wait()
asyncio.run(main())
"""


@pytest.fixture
async def root(secured_repo_url: str) -> AsyncIterator[RepoClient]:
    async with RepoClient(secured_repo_url, ROOT) as client:
        yield client


async def test_a_local_spout_commits_with_its_own_revocable_credential(
    tmp_path: Path, secured_repo_url: str, root: RepoClient
) -> None:
    name, other = unique("feed"), unique("other")
    await root.create_repo(name)
    await root.create_repo(other)
    report = tmp_path / "report.txt"
    pipelines = PipelineList()
    pipelines.put(
        {
            "pipeline": {"name": name},
            "spout": {},
            "transform": {"cmd": [sys.executable, "-c", PROGRAM, str(report), other]},
        }
    )
    settings = scheduler_settings(tmp_path, secured_repo_url, TUSK_TOKEN=ROOT)
    supervisor = SpoutSupervisor(settings, pipelines, root)  # type: ignore[arg-type]
    try:
        await supervisor.reconcile()
        assert supervisor.pid(name) is not None

        async def reported() -> bool:
            return report.exists() and "\n" in report.read_text()

        log = settings.resolved_workspace_dir / "spouts" / f"{name}.log"
        await wait_until(reported, within=120, what=f"the spout's report (log: {log})")
        token, elsewhere = report.read_text().split("\n")
        assert token
        assert token != ROOT
        assert elsewhere == "forbidden"
        data = b"".join([c async for c in root.get_file(name, "master", "/hello.txt")])
        assert data == b"from the spout"

        spec = PipelineSpec.model_validate(pipelines.specs[name][1])
        place = await supervisor.where(name, spec)
        assert (place.kind, place.runner, place.running) == ("spout", "local", True)
        assert place.pid == supervisor.pid(name)
        assert place.log_path == str(log)
        assert f"process {place.pid}" in place.where

        pipelines.specs.clear()
        await supervisor.reconcile()
        assert supervisor.pid(name) is None
        async with RepoClient(secured_repo_url, token) as revoked:
            with pytest.raises(Unauthorized):
                await revoked.start_commit(name, "master", pipeline=name)
        with pytest.raises(NotFound):
            await root.inspect_commit(name, "master^1")  # one commit only, from the spout
    finally:
        await supervisor.stop()
