"""The trigger's side of `datum restart`, `job delete` and branch triggers, in-process against
the repo service on each of its backends (SQLite with a local directory, PostgreSQL with S3):
the refusals with their reasons, idempotent retries, and redelivered events."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from tests.repo.helpers import error, ok
from tests.trigger.conftest import Harness
from tusk.events.types import (
    CommitFinished,
    DatumCounts,
    JobCreated,
    JobDeleted,
    JobFailed,
    JobStarted,
)


def spec(name: str, repo: str, **pfs: object) -> str:
    return json.dumps(
        {
            "pipeline": {"name": name},
            "input": {"pfs": {"repo": repo, "glob": "/*", **pfs}},
            "transform": {"cmd": ["python3", "-c", "pass"]},
        }
    )


async def _jobs(h: Harness, pipeline: str) -> list[dict]:
    return ok(await h.api.get("/v1/jobs", params={"pipeline": pipeline}))["items"]


async def _end(h: Harness, job: dict, output_commit: str, *, failed: int) -> None:
    now = datetime.now(UTC)
    counts = DatumCounts(total=3, processed=3 - failed, failed=failed)
    await h.announce(
        JobStarted(
            job=job["id"], pipeline=job["pipeline"], output_commit=output_commit,
            counts=DatumCounts(total=3), started_at=now,
        ),
        JobFailed(
            job=job["id"], pipeline=job["pipeline"], output_commit=output_commit,
            reason="1 datum failed", counts=counts, finished_at=now,
        ),
    )  # fmt: skip

    async def ended() -> bool:
        return ok(await h.api.get(f"/v1/jobs/{job['id']}"))["state"] == "failure"

    await h.eventually(ended)


async def test_restart_and_delete(harness: Harness) -> None:
    h = harness
    await h.repos.create_repo("raw")
    ok(await h.api.post("/v1/pipelines", content=spec("clean", "raw")), 201)
    await h.commit("raw", {"/a": b"1", "/b": b"2", "/c": b"3"})
    job = (await h.eventually(lambda: _jobs(h, "clean")))[0]

    running = await h.api.post(f"/v1/jobs/{job['id']}/restart")
    assert "wait for it to end" in error(running, 409)
    assert "stop it first" in error(await h.api.delete(f"/v1/jobs/{job['id']}"), 409)

    # The job's output commit, as the scheduler would have made it.
    out = await h.repos.start_commit("clean", "master", pipeline="clean")
    await h.repos.finish_commit("clean", out.id)
    await _end(h, job, out.id, failed=1)

    restarted = ok(await h.api.post(f"/v1/jobs/{job['id'][:8]}/restart"))
    assert restarted["id"] != job["id"]
    assert restarted["inputs"] == job["inputs"]
    assert restarted["global_id"] == job["global_id"]
    again = ok(await h.api.post(f"/v1/jobs/{job['id']}/restart"))
    assert again["id"] == restarted["id"]

    async def published(event_type: str) -> list[str]:
        """The jobs named by the ``event_type`` events the outbox relay has published."""
        return [e.payload().job for e in await h.job_events() if e.type == event_type]  # type: ignore[attr-defined]

    async def created_restart() -> list[str] | None:
        created = await published(JobCreated.type)
        return created if restarted["id"] in created else None

    created = await h.eventually(created_restart, timeout=120)
    assert created.count(restarted["id"]) == 1

    # Deleting an ended job takes its output commit.
    deleted = ok(await h.api.delete(f"/v1/jobs/{job['id']}"))
    assert deleted["jobs"] == [job["id"]]
    assert deleted["dropped_commits"] == [f"clean@{out.id}"]
    assert error(await h.api.get(f"/v1/jobs/{job['id']}"), 404)
    # The relay publishes after the request's transaction: wait for it, not a duration.
    assert await h.eventually(lambda: published(JobDeleted.type), timeout=120) == [job["id"]]
    # Asking again: the job is gone (404), nothing else happens.
    assert error(await h.api.delete(f"/v1/jobs/{job['id']}"), 404)


async def test_a_branch_trigger_moves_the_branch_once_per_condition(harness: Harness) -> None:
    h = harness
    await h.repos.create_repo("raw")
    trigger = {"branch": "staging", "commits": 2}
    ok(await h.api.post("/v1/pipelines", content=spec("late", "raw", trigger=trigger)), 201)
    await h.commit("raw", {"/a": b"1"}, branch="staging")
    assert not await _jobs(h, "late")
    second = await h.commit("raw", {"/b": b"2"}, branch="staging")
    jobs = await h.eventually(lambda: _jobs(h, "late"))
    assert [i["commit"] for i in jobs[0]["inputs"]] == [second]
    assert (await h.repos.inspect_branch("raw", "master")).head == second

    # The same event again (at-least-once delivery): the branch is there already, no new job.
    info = await h.repos.inspect_commit("raw", second)
    await h.announce(
        CommitFinished(
            repo="raw", commit=second, branch="staging", parent=info.parent,
            global_id=info.global_id, finished_at=info.finished_at or info.started_at,
            size_bytes=info.size_bytes or 0, file_count=info.file_count or 0,
        )
    )  # fmt: skip
    await h.eventually(lambda: _jobs(h, "late"))
    assert len(await _jobs(h, "late")) == 1


async def test_a_rate_limited_trigger_fires_once_per_period(harness: Harness) -> None:
    """``rate_limit_spec`` (Pachyderm's meaning): a commit moves the input branch only if a
    tick of the schedule came between the branch head's finish and its own."""
    h = harness
    await h.repos.create_repo("raw")
    # Three pipelines watch `staging`: one on every commit (its jobs show that the trigger
    # has handled a commit), one limited to once an hour, one to once a second.
    pipelines = {
        "eager": ("every", {"branch": "staging", "commits": 1}),
        "hourly": ("master", {"branch": "staging", "rate_limit_spec": "@every 1h"}),
        "secondly": ("second", {"branch": "staging", "rate_limit_spec": "@every 1s"}),
    }
    for name, (branch, trigger) in pipelines.items():
        body = spec(name, "raw", branch=branch, trigger=trigger)
        ok(await h.api.post("/v1/pipelines", content=body), 201)

    async def handled(commit: str) -> bool:
        return any(i["commit"] == commit for j in await _jobs(h, "eager") for i in j["inputs"])

    async def head(branch: str) -> str | None:
        return (await h.repos.inspect_branch("raw", branch)).head

    first = await h.commit("raw", {"/a": b"1"}, branch="staging")
    await h.eventually(lambda: handled(first))
    # No head yet: the first commit passes every rate limit.
    assert await head("master") == first
    assert await head("second") == first

    second = await h.commit("raw", {"/b": b"2"}, branch="staging")
    await h.eventually(lambda: handled(second))
    assert await head("master") == first  # the hour has not passed

    # Once a second has passed since `first` finished, the next commit moves `second`.
    async def moved() -> str | None:
        latest = await h.commit("raw", {"/c": b"3"}, branch="staging")
        await h.eventually(lambda: handled(latest))
        now = await head("second")
        return now if now != first else None

    moved_to = await h.eventually(moved, timeout=120)
    started = (await h.repos.inspect_commit("raw", first)).finished_at
    later = (await h.repos.inspect_commit("raw", moved_to)).finished_at
    assert started is not None
    assert later is not None
    assert (later - started).total_seconds() > 1
    assert await head("master") == first
