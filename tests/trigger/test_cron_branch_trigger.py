"""Cron branch triggers (Pachyderm's ``pfs.trigger.cron_spec``): on each tick the trigger
service moves the input branch to the watched branch's head, if it has grown, and the pipeline
runs once on it. The trigger's own tables on SQLite and on PostgreSQL; the repo service on each
of its backends. Every wait is for a condition (the schedule row moving on), never a duration."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.backing.postgres import PostgresServer
from tests.repo.helpers import ok
from tests.trigger.conftest import Harness, running_trigger
from tusk.db import Database
from tusk_repo.context import Context as RepoContext
from tusk_trigger.tables import BranchScheduleRow


def spec(name: str, trigger: dict[str, object]) -> str:
    return json.dumps(
        {
            "pipeline": {"name": name},
            "input": {"pfs": {"repo": "raw", "glob": "/*", "trigger": trigger}},
            "transform": {"cmd": ["python3", "-c", "pass"]},
        }
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def trigger_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'trigger.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.new_database()


async def _jobs(h: Harness, pipeline: str) -> list[dict]:
    return ok(await h.api.get("/v1/jobs", params={"pipeline": pipeline}))["items"]


async def _schedule(h: Harness, pipeline: str) -> BranchScheduleRow:
    async with h.db.session(write=False) as session:
        row = await session.scalar(
            select(BranchScheduleRow).where(BranchScheduleRow.pipeline == pipeline)
        )
    assert row is not None
    return row


async def _ticks_pass(h: Harness, pipeline: str, count: int) -> None:
    """Wait until the schedule has been looked at ``count`` more times."""
    seen = [(await _schedule(h, pipeline)).next_tick_at]

    async def moved_on() -> bool:
        at = (await _schedule(h, pipeline)).next_tick_at
        if at != seen[-1]:
            seen.append(at)
        return len(seen) > count

    await h.eventually(moved_on, timeout=60)


async def test_the_input_branch_moves_on_the_schedule_once_per_growth(
    repo_ctx: RepoContext, trigger_db: str, tmp_path: Path
) -> None:
    async with running_trigger(repo_ctx, trigger_db, tmp_path) as h:
        await h.repos.create_repo("raw")
        # Both commits before the pipeline, so that no tick (one a second) can come between
        # them however slow the machine.
        first = await h.commit("raw", {"/a": b"1"}, branch="staging")
        second = await h.commit("raw", {"/b": b"2"}, branch="staging")
        every = {"branch": "staging", "cron_spec": "@every 1s"}
        created = ok(await h.api.post("/v1/pipelines", content=spec("nightly", every)), 201)
        assert not [w for w in created["warnings"] if "cron_spec" in w]

        # Not on the commits: on the next tick, once, to the newest.
        jobs = await h.eventually(lambda: _jobs(h, "nightly"), timeout=60)
        assert [i["commit"] for i in jobs[0]["inputs"]] == [second]
        assert (await h.repos.inspect_branch("raw", "master")).head == second
        assert first != second

        # Ticks with nothing new move nothing and run nothing.
        await _ticks_pass(h, "nightly", 2)
        assert len(await _jobs(h, "nightly")) == 1

        third = await h.commit("raw", {"/c": b"3"}, branch="staging")

        async def second_job() -> list[dict]:
            found = await _jobs(h, "nightly")
            return found if len(found) == 2 else []

        jobs = await h.eventually(second_job, timeout=60)
        assert {i["commit"] for j in jobs for i in j["inputs"]} == {second, third}


async def test_with_all_the_tick_waits_for_the_other_conditions(
    repo_ctx: RepoContext, trigger_db: str, tmp_path: Path
) -> None:
    async with running_trigger(repo_ctx, trigger_db, tmp_path) as h:
        await h.repos.create_repo("raw")
        both = {"branch": "staging", "cron_spec": "@every 1s", "commits": 2, "all": True}
        ok(await h.api.post("/v1/pipelines", content=spec("batched", both)), 201)
        await h.commit("raw", {"/a": b"1"}, branch="staging")
        await _ticks_pass(h, "batched", 2)
        assert not await _jobs(h, "batched")  # one commit is not two
        second = await h.commit("raw", {"/b": b"2"}, branch="staging")
        jobs = await h.eventually(lambda: _jobs(h, "batched"), timeout=60)
        assert [i["commit"] for i in jobs[0]["inputs"]] == [second]


async def test_a_tick_claimed_before_a_restart_fires_once_after_it(
    repo_ctx: RepoContext, trigger_db: str, tmp_path: Path
) -> None:
    yearly = {"branch": "staging", "cron_spec": "0 0 1 1 *"}
    async with running_trigger(repo_ctx, trigger_db, tmp_path) as h:
        await h.repos.create_repo("raw")
        ok(await h.api.post("/v1/pipelines", content=spec("yearly", yearly)), 201)
        staged = await h.commit("raw", {"/a": b"1"}, branch="staging")
    # The state a crash leaves between claiming a tick and moving the branch: the tick
    # recorded with its commit, the schedule already moved on to the next one.
    db = Database.from_url(trigger_db)
    try:
        async with db.session() as session:
            row = await session.get(BranchScheduleRow, ("yearly", "raw"))
            assert row is not None
            row.firing = staged
            next_tick = row.next_tick_at
    finally:
        await db.dispose()
    assert next_tick > datetime.now(UTC) + timedelta(days=1)

    async with running_trigger(repo_ctx, trigger_db, tmp_path) as h:
        assert not await _jobs(h, "yearly") or (await _schedule(h, "yearly")).firing is None

        async def finished() -> bool:
            return (await _schedule(h, "yearly")).firing is None

        await h.eventually(finished, timeout=60)
        jobs = await _jobs(h, "yearly")
        assert [[i["commit"] for i in j["inputs"]] for j in jobs] == [[staged]]
        assert (await h.repos.inspect_branch("raw", "master")).head == staged
        assert (await _schedule(h, "yearly")).next_tick_at == next_tick  # not claimed again
