from __future__ import annotations

import json

import pytest
from sqlalchemy import event

from tests.repo.helpers import error, ok
from tests.trigger.conftest import Harness
from tusk.events.types import JobCreated, JobStarted, JobSucceeded


def spec(name: str = "clean", *, repo: str = "raw", glob: str = "/*", **extra: object) -> str:
    return json.dumps(
        {
            "pipeline": {"name": name},
            "input": {"pfs": {"repo": repo, "glob": glob}},
            "transform": {"cmd": ["python3", "-c", "pass"]},
            **extra,
        }
    )


async def _jobs(h: Harness, pipeline: str) -> list[dict]:
    return ok(await h.api.get("/v1/jobs", params={"pipeline": pipeline}))["items"]


async def test_create_validates_and_makes_output_repo(harness: Harness) -> None:
    h = harness
    error(await h.api.post("/v1/pipelines", content=spec()), 400, "raw", "does not exist")
    await h.repos.create_repo("raw")
    error(
        await h.api.post("/v1/pipelines", content=spec().replace("transform", "transfrom")),
        400,
        "transfrom",
    )
    created = ok(await h.api.post("/v1/pipelines", content=spec()), 201)
    assert (created["version"], created["state"], created["output_repo"]) == (1, "running", "clean")
    assert created["input_repos"] == ["raw"]
    assert (await h.repos.inspect_repo("clean")).commit_count == 0
    error(await h.api.post("/v1/pipelines", content=spec()), 409, "already exists")
    # YAML works too.
    yaml_spec = "pipeline: {name: other}\ninput: {pfs: {repo: raw}}\ntransform: {cmd: [x]}\n"
    ok(
        await h.api.post(
            "/v1/pipelines", content=yaml_spec, headers={"Content-Type": "application/yaml"}
        ),
        201,
    )
    names = [p["name"] for p in ok(await h.api.get("/v1/pipelines"))]
    assert names == ["clean", "other"]


async def test_unhashable_yaml_key_is_a_bad_request(harness: Harness) -> None:
    response = await harness.api.post(
        "/v1/pipelines", content="? [a, b]\n: 1\n", headers={"Content-Type": "application/yaml"}
    )
    error(response, 400, "line 1", "mapping key")


async def test_cycles_are_refused(harness: Harness) -> None:
    h = harness
    await h.repos.create_repo("raw")
    ok(await h.api.post("/v1/pipelines", content=spec("a", repo="raw")), 201)
    ok(await h.api.post("/v1/pipelines", content=spec("b", repo="a")), 201)
    updated = spec("a", repo="b")
    error(await h.api.put("/v1/pipelines/a", content=updated), 400, "cycle")


async def test_one_job_per_input_commit_whatever_is_redelivered(harness: Harness) -> None:
    h = harness
    await h.repos.create_repo("raw")
    ok(await h.api.post("/v1/pipelines", content=spec()), 201)
    commit = await h.commit("raw", {"/a.csv": b"1"})
    jobs = await h.eventually(lambda: _jobs(h, "clean"))
    assert len(jobs) == 1
    job = jobs[0]
    assert job["inputs"] == [{"name": "raw", "repo": "raw", "branch": "master", "commit": commit}]
    assert job["global_id"] == commit
    # The same commit.finished again (at-least-once delivery) makes no second job.
    info = await h.repos.inspect_commit("raw", commit)
    from tusk.events.types import CommitFinished

    await h.announce(
        CommitFinished(
            repo="raw",
            commit=commit,
            branch="master",
            parent=None,
            global_id=info.global_id,
            finished_at=info.finished_at,
            size_bytes=1,
            file_count=1,
        )
    )
    created = await h.eventually(lambda: _created(h))
    assert len(created) == 1
    assert created[0].pipeline == "clean"
    version = ok(await h.api.get("/v1/pipelines/clean/versions/1"))
    assert created[0].spec_digest == version["digest"]
    assert len(await _jobs(h, "clean")) == 1


async def _created(h: Harness) -> list[JobCreated]:
    return [e.payload() for e in await h.job_events() if e.type == JobCreated.type]  # type: ignore[misc]


async def test_first_job_runs_on_existing_data(harness: Harness) -> None:
    h = harness
    await h.repos.create_repo("raw")
    await h.commit("raw", {"/a": b"1"})
    ok(await h.api.post("/v1/pipelines", content=spec()), 201)
    assert len(await _jobs(h, "clean")) == 1


async def test_failed_commits_trigger_nothing(harness: Harness) -> None:
    h = harness
    await h.repos.create_repo("raw")
    ok(await h.api.post("/v1/pipelines", content=spec()), 201)
    await h.commit("raw", {"/a": b"1"}, error="upstream failed")
    await h.commit("raw", {"/b": b"2"}, branch="dev")  # a branch the pipeline does not read
    await h.commit("raw", {"/c": b"3"})
    jobs = await h.eventually(lambda: _jobs(h, "clean"))
    assert len(jobs) == 1


async def test_cross_waits_for_every_input(harness: Harness) -> None:
    h = harness
    await h.repos.create_repo("left")
    await h.repos.create_repo("right")
    cross = json.dumps(
        {
            "pipeline": {"name": "both"},
            "input": {
                "cross": [
                    {"pfs": {"repo": "left", "glob": "/*"}},
                    {"pfs": {"repo": "right", "glob": "/"}},
                ]
            },
            "transform": {"cmd": ["true"]},
        }
    )
    ok(await h.api.post("/v1/pipelines", content=cross), 201)
    await h.commit("left", {"/x": b"1"})
    assert await _jobs(h, "both") == []
    right = await h.commit("right", {"/y": b"2"})
    jobs = await h.eventually(lambda: _jobs(h, "both"))
    assert {i["name"]: i["commit"] for i in jobs[0]["inputs"]}["right"] == right


async def test_job_records_follow_the_scheduler(harness: Harness) -> None:
    from datetime import UTC, datetime

    from tusk.events.types import DatumCounts

    h = harness
    await h.repos.create_repo("raw")
    ok(await h.api.post("/v1/pipelines", content=spec()), 201)
    await h.commit("raw", {"/a": b"1"})
    job = (await h.eventually(lambda: _jobs(h, "clean")))[0]
    now = datetime.now(UTC)
    await h.announce(
        JobStarted(
            job=job["id"],
            pipeline="clean",
            output_commit="f" * 32,
            counts=DatumCounts(total=3),
            started_at=now,
        ),
        JobSucceeded(
            job=job["id"],
            pipeline="clean",
            output_commit="f" * 32,
            counts=DatumCounts(total=3, processed=2, skipped=1),
            finished_at=now,
        ),
    )

    async def finished() -> dict | None:
        found = ok(await h.api.get(f"/v1/jobs/{job['id']}"))
        return found if found["state"] == "success" else None

    done = await h.eventually(finished)
    assert done["counts"]["skipped"] == 1
    assert done["output_commit"] == "f" * 32
    waited = ok(await h.api.get(f"/v1/jobs/{job['id']}/wait", params={"timeout": 1}))
    assert waited["state"] == "success"


async def test_update_stop_start_delete(harness: Harness) -> None:
    h = harness
    await h.repos.create_repo("raw")
    ok(await h.api.post("/v1/pipelines", content=spec()), 201)
    await h.commit("raw", {"/a": b"1"})
    await h.eventually(lambda: _jobs(h, "clean"))
    updated = ok(
        await h.api.put("/v1/pipelines/clean", content=spec(glob="/"), params={"reprocess": "true"})
    )
    assert updated["version"] == 2
    jobs = await _jobs(h, "clean")
    assert [j["version"] for j in jobs] == [2, 1]
    error(await h.api.put("/v1/pipelines/clean", content=spec("renamed")), 400, "pipeline.name")
    stopped = ok(await h.api.post("/v1/pipelines/clean/stop"))
    assert stopped["state"] == "stopped"
    await h.commit("raw", {"/b": b"2"})
    assert len(await _jobs(h, "clean")) == 2  # stopped: no job
    ok(await h.api.post("/v1/pipelines/clean/start"))
    assert len(await _jobs(h, "clean")) == 3  # the change made while stopped runs now
    ok(await h.api.post("/v1/pipelines", content=spec("downstream", repo="clean")), 201)
    error(await h.api.delete("/v1/pipelines/clean"), 409, "downstream")
    assert (await h.api.delete("/v1/pipelines/downstream")).status_code == 204
    assert (await h.api.delete("/v1/pipelines/clean")).status_code == 204
    error(await h.api.get("/v1/pipelines/clean"), 404)
    with pytest.raises(Exception, match="not found"):
        await h.repos.inspect_repo("clean")


async def test_cron_ticks_trigger_jobs(harness: Harness) -> None:
    h = harness
    await h.repos.create_repo("features")
    cron = json.dumps(
        {
            "pipeline": {"name": "train"},
            "input": {
                "cross": [
                    {"pfs": {"repo": "features", "glob": "/"}},
                    {"cron": {"name": "tick", "spec": "@every 1s", "overwrite": True}},
                ]
            },
            "transform": {"cmd": ["true"]},
        }
    )
    ok(await h.api.post("/v1/pipelines", content=cron), 201)
    features = await h.commit("features", {"/f": b"1"})
    info = await h.repos.inspect_repo("train_tick")
    assert info.name == "train_tick"

    async def ticked() -> list[dict]:
        return await _jobs(h, "train")

    # The tick commits into train_tick; the repo service would announce it: do so here.
    from tusk.events.types import CommitFinished

    async def announce_ticks() -> list[dict]:
        try:
            head = await h.repos.inspect_commit("train_tick", "master")
        except Exception:
            return []
        await h.announce(
            CommitFinished(
                repo="train_tick",
                commit=head.id,
                branch="master",
                parent=head.parent,
                global_id=head.global_id,
                finished_at=head.finished_at,
                size_bytes=0,
                file_count=1,
            )
        )
        return await ticked()

    jobs = await h.eventually(announce_ticks, timeout=15)
    inputs = {i["name"]: i["commit"] for i in jobs[0]["inputs"]}
    assert inputs["features"] == features
    assert inputs["tick"] != features


async def test_listing_pipelines_takes_a_bounded_number_of_queries(harness: Harness) -> None:
    h = harness
    await h.repos.create_repo("raw")
    await h.commit("raw", {"/a.csv": b"1"})
    names = [f"p{i:02d}" for i in range(12)]
    for name in names:
        ok(await h.api.post("/v1/pipelines", content=spec(name)), 201)
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        # Queries, not transaction control; the outbox relay and the cron loop (every 0.1 s
        # here) run beside the request, and a loaded machine lets them in.
        if statement.lstrip().upper().startswith("SELECT") and not (
            "outbox" in statement or "trigger_cron" in statement
        ):
            statements.append(statement)

    event.listen(h.db.engine.sync_engine, "before_cursor_execute", count)
    try:
        listed = ok(await h.api.get("/v1/pipelines"))
    finally:
        event.remove(h.db.engine.sync_engine, "before_cursor_execute", count)
    assert [p["name"] for p in listed] == names
    # Each pipeline's first job, made at creation on the existing data, is its last job.
    for pipeline in listed:
        jobs = await _jobs(h, pipeline["name"])
        assert pipeline["last_job"] == jobs[0]["id"]
        assert pipeline["last_job_state"] == jobs[0]["state"]
    assert len(statements) <= 3, statements
