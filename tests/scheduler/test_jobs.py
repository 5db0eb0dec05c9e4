"""The scheduler end to end on one machine: job.created on a MemoryBus, a real repo service,
the LocalRunner starting real tusk-worker processes."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest

from tests.scheduler.conftest import Scheduler
from tests.scheduler.helpers import (
    commit_files,
    executions,
    job_created,
    output_files,
    pid_alive,
    pipeline_spec,
    processes_of_job,
    unique,
    wait_until,
)
from tests.worker.helpers import result_line
from tusk.client import RepoClient
from tusk.errors import NotFound
from tusk.events.types import JobCancel
from tusk.worker.protocol import META_BRANCH, ShardSpec, results_batch_path, shard_path
from tusk_scheduler.app import create_app
from tusk_scheduler.domain.results import ResultReader


async def _setup(repos: RepoClient, files: dict[str, bytes]) -> tuple[str, str, str, str]:
    """An input repo with one commit of ``files`` and an empty output repo; their names, the
    commit and its global id."""
    source, pipeline = unique("raw"), unique("upper")
    await repos.create_repo(source)
    await repos.create_repo(pipeline)
    commit = await commit_files(repos, source, files)
    info = await repos.inspect_commit(source, commit)
    return source, pipeline, commit, info.global_id


async def test_job_runs_shards_and_finishes_the_output_commit(
    scheduler: Scheduler, repos: RepoClient, markers: Path
) -> None:
    files = {f"/{c}.txt": f"content of {c}".encode() for c in "abcde"}
    source, pipeline, commit, global_id = await _setup(repos, files)
    spec = pipeline_spec(pipeline, source, parallelism=2, markers=markers)
    created = job_created(spec, source, commit, global_id)
    await scheduler.send(created)

    done = await scheduler.events.wait_for(created.job, "succeeded")
    started = scheduler.events.of(created.job, "started")[0]
    assert done["counts"] == {"total": 5, "processed": 5, "skipped": 0, "failed": 0, "recovered": 0}
    output = done["output_commit"]
    assert started["output_commit"] == output

    info = await repos.inspect_commit(pipeline, output)
    assert info.state == "finished"
    assert info.error is None
    assert info.branch == "master"
    assert info.global_id == global_id
    assert [(p.repo, p.commit) for p in info.provenance] == [(source, commit)]
    assert await output_files(repos, pipeline, output) == {
        f"{path}.out": data.upper() for path, data in files.items()
    }
    assert (await repos.inspect_branch(pipeline, "master")).head == output
    assert executions(markers) == {f"{c}.txt": 1 for c in "abcde"}

    job = (await scheduler.api.get(f"/v1/jobs/{created.job}")).json()
    assert job["state"] == "success"
    assert job["output_commit"] == output
    assert job["meta_commit"]
    assert [(s["shard"], s["state"], s["exit_code"]) for s in job["shards"]] == [
        (0, "done", 0),
        (1, "done", 0),
    ]
    meta = await repos.inspect_commit(pipeline, job["meta_commit"])
    assert meta.branch == "meta"
    assert meta.state == "finished"
    shard_data = b"".join(
        [p async for p in repos.get_file(pipeline, meta.id, shard_path(created.job, 0))]
    )
    log_tail_bytes = scheduler.context.settings.log_tail_bytes
    assert ShardSpec.model_validate_json(shard_data).log_tail_bytes == log_tail_bytes

    datums = (await scheduler.api.get(f"/v1/jobs/{created.job}/datums")).json()
    assert len(datums["items"]) == 5
    assert {d["state"] for d in datums["items"]} == {"success"}
    first = datums["items"][0]
    assert first["attempts"] == 1
    assert first["inputs"][0]["commit"] == commit
    assert first["outputs"][0]["path"] == first["inputs"][0]["path"] + ".out"
    one = await scheduler.api.get(f"/v1/jobs/{created.job}/datums/{first['datum']}")
    assert one.json() == first
    logs = (await scheduler.api.get(f"/v1/jobs/{created.job}/logs")).json()
    assert len(logs) == 5
    assert all("processing" in entry["log"] for entry in logs)

    page = (await scheduler.api.get(f"/v1/jobs/{created.job}/datums?limit=2")).json()
    assert len(page["items"]) == 2
    rest = await scheduler.api.get(
        f"/v1/jobs/{created.job}/datums", params={"cursor": page["next_cursor"]}
    )
    assert len(rest.json()["items"]) == 3

    metrics = (await scheduler.api.get("/metrics")).text
    assert 'tusk_scheduler_jobs{state="success"} 1.0' in metrics
    assert 'tusk_scheduler_datums_total{state="success"} 5.0' in metrics
    assert "tusk_scheduler_shard_starts_total" in metrics


async def test_incremental_jobs_skip_unchanged_datums_and_drop_removed_ones(
    scheduler: Scheduler, repos: RepoClient, markers: Path
) -> None:
    files = {f"/{c}.txt": c.encode() for c in "abcd"}
    source, pipeline, first, global_id = await _setup(repos, files)
    spec = pipeline_spec(pipeline, source, parallelism=2, markers=markers)
    job1 = job_created(spec, source, first, global_id)
    await scheduler.send(job1)
    await scheduler.events.wait_for(job1.job, "succeeded")

    # One file changes: only its datum runs, the other three are carried forward.
    second = await commit_files(repos, source, {"/b.txt": b"b, changed"})
    job2 = job_created(spec, source, second, (await repos.inspect_commit(source, second)).global_id)
    await scheduler.send(job2)
    done = await scheduler.events.wait_for(job2.job, "succeeded")
    assert done["counts"] == {"total": 4, "processed": 1, "skipped": 3, "failed": 0, "recovered": 0}
    assert await output_files(repos, pipeline, done["output_commit"]) == {
        "/a.txt.out": b"A",
        "/b.txt.out": b"B, CHANGED",
        "/c.txt.out": b"C",
        "/d.txt.out": b"D",
    }
    assert executions(markers) == {"a.txt": 1, "b.txt": 2, "c.txt": 1, "d.txt": 1}
    skipped = (
        await scheduler.api.get(f"/v1/jobs/{job2.job}/datums", params={"state": "skipped"})
    ).json()["items"]
    assert sorted(d["outputs"][0]["path"] for d in skipped) == [
        "/a.txt.out",
        "/c.txt.out",
        "/d.txt.out",
    ]

    # A file is removed: its datum's output goes with it; nothing runs at all.
    third = await commit_files(repos, source, {"/c.txt": None})
    job3 = job_created(spec, source, third, (await repos.inspect_commit(source, third)).global_id)
    await scheduler.send(job3)
    done = await scheduler.events.wait_for(job3.job, "succeeded")
    assert done["counts"]["total"] == 3
    assert done["counts"]["skipped"] == 3
    assert await output_files(repos, pipeline, done["output_commit"]) == {
        "/a.txt.out": b"A",
        "/b.txt.out": b"B, CHANGED",
        "/d.txt.out": b"D",
    }
    assert executions(markers) == {"a.txt": 1, "b.txt": 2, "c.txt": 1, "d.txt": 1}

    # A new version that changes only parallelism, resources and the description keeps every
    # processed datum: nothing runs.
    resized = {
        **spec,
        "parallelism_spec": {"constant": 3},
        "resource_requests": {"cpu": "1", "memory": "1Gi"},
        "description": "resized",
    }
    job4 = job_created(resized, source, third, job3.global_id, version=2)
    await scheduler.send(job4)
    done = await scheduler.events.wait_for(job4.job, "succeeded")
    assert done["counts"]["processed"] == 0
    assert done["counts"]["skipped"] == 3
    assert executions(markers) == {"a.txt": 1, "b.txt": 2, "c.txt": 1, "d.txt": 1}

    # A new salt (what `pipeline update --reprocess` sets) processes everything again.
    job5 = job_created({**resized, "salt": "again"}, source, third, job3.global_id, version=3)
    await scheduler.send(job5)
    done = await scheduler.events.wait_for(job5.job, "succeeded")
    assert done["counts"]["processed"] == 3
    assert executions(markers) == {"a.txt": 2, "b.txt": 3, "c.txt": 1, "d.txt": 2}

    # So does a change of the command.
    env = {**spec["transform"]["env"], "CHANGED": "1"}
    changed = {**spec, "transform": {**spec["transform"], "env": env}}
    job6 = job_created(changed, source, third, job3.global_id, version=4)
    await scheduler.send(job6)
    done = await scheduler.events.wait_for(job6.job, "succeeded")
    assert done["counts"]["processed"] == 3


async def test_reprocess_spec_every_job_runs_every_datum_of_every_job(
    scheduler: Scheduler, repos: RepoClient, markers: Path
) -> None:
    """Pachyderm's ``reprocess_spec: every_job``: no datum is skipped as done before, so
    one changed file runs all three datums again (``until_success``, the default, runs one)."""
    files = {f"/{c}.txt": c.encode() for c in "abc"}
    source, pipeline, first, global_id = await _setup(repos, files)
    spec = {**pipeline_spec(pipeline, source, markers=markers), "reprocess_spec": "every_job"}
    job1 = job_created(spec, source, first, global_id)
    await scheduler.send(job1)
    await scheduler.events.wait_for(job1.job, "succeeded")

    second = await commit_files(repos, source, {"/b.txt": b"b, changed"})
    job2 = job_created(spec, source, second, (await repos.inspect_commit(source, second)).global_id)
    await scheduler.send(job2)
    done = await scheduler.events.wait_for(job2.job, "succeeded")
    assert done["counts"] == {"total": 3, "processed": 3, "skipped": 0, "failed": 0, "recovered": 0}
    assert executions(markers) == {"a.txt": 2, "b.txt": 2, "c.txt": 2}
    assert await output_files(repos, pipeline, done["output_commit"]) == {
        "/a.txt.out": b"A",
        "/b.txt.out": b"B, CHANGED",
        "/c.txt.out": b"C",
    }


async def test_a_failing_datum_fails_the_job_and_marks_the_output_commit(
    scheduler: Scheduler, repos: RepoClient
) -> None:
    files = {"/good.txt": b"fine", "/bad.txt": b"this one says FAIL", "/ok.txt": b"fine too"}
    source, pipeline, commit, global_id = await _setup(repos, files)
    spec = pipeline_spec(pipeline, source, parallelism=2, datum_tries=2)
    created = job_created(spec, source, commit, global_id)
    await scheduler.send(created)

    failed = await scheduler.events.wait_for(created.job, "failed")
    assert failed["killed"] is False
    assert "1 datum failed" in failed["reason"]
    assert "in:/bad.txt" in failed["reason"]
    assert "failed after 2 attempts: exit code 3" in failed["reason"]
    assert failed["counts"]["failed"] == 1
    assert failed["counts"]["processed"] == 2
    assert not scheduler.events.of(created.job, "succeeded")

    info = await repos.inspect_commit(pipeline, failed["output_commit"])
    assert info.state == "finished"
    assert info.error == failed["reason"]
    job = (await scheduler.api.get(f"/v1/jobs/{created.job}")).json()
    assert job["state"] == "failure"
    assert job["reason"] == failed["reason"]

    bad = [
        d
        for d in (await scheduler.api.get(f"/v1/jobs/{created.job}/datums")).json()["items"]
        if d["state"] == "failed"
    ]
    assert len(bad) == 1
    assert bad[0]["error"] == (
        "exit code 3; stderr ends:\nrefusing input bad.txt because it says FAIL"
    )
    assert bad[0]["attempts"] == 2
    log = (await scheduler.api.get(f"/v1/jobs/{created.job}/datums/{bad[0]['datum']}/logs")).json()
    assert "refusing input bad.txt because it says FAIL" in log["log"]
    assert log["full_log"].startswith(f"{pipeline}@{job['meta_commit']}:/jobs/{created.job}/")

    # The datums that succeeded are not run again by the next job of this version.
    fixed = await commit_files(repos, source, {"/bad.txt": b"now fine"})
    again = job_created(spec, source, fixed, (await repos.inspect_commit(source, fixed)).global_id)
    await scheduler.send(again)
    done = await scheduler.events.wait_for(again.job, "succeeded")
    assert done["counts"]["processed"] == 1
    assert done["counts"]["skipped"] == 2


async def test_two_datums_writing_one_path_fail_the_job_naming_both(
    scheduler: Scheduler, repos: RepoClient
) -> None:
    files = {"/x.txt": b"COLLIDE x", "/y.txt": b"COLLIDE y", "/z.txt": b"z"}
    source, pipeline, commit, global_id = await _setup(repos, files)
    spec = pipeline_spec(pipeline, source, parallelism=3)
    created = job_created(spec, source, commit, global_id)
    await scheduler.send(created)

    failed = await scheduler.events.wait_for(created.job, "failed")
    datums = {
        d["inputs"][0]["path"]: d["datum"]
        for d in (await scheduler.api.get(f"/v1/jobs/{created.job}/datums")).json()["items"]
    }
    reason = failed["reason"]
    assert reason.startswith("output collision: ")
    assert datums["/x.txt"] in reason
    assert datums["/y.txt"] in reason
    assert "in:/x.txt" in reason
    assert "in:/y.txt" in reason
    assert "both write /collide.txt" in reason
    assert (await repos.inspect_commit(pipeline, failed["output_commit"])).error == reason


async def test_cancel_kills_the_workers(
    scheduler: Scheduler, repos: RepoClient, markers: Path
) -> None:
    files = {"/slow1.txt": b"SLEEP=60", "/slow2.txt": b"SLEEP=60"}
    source, pipeline, commit, global_id = await _setup(repos, files)
    spec = pipeline_spec(pipeline, source, parallelism=2, markers=markers)
    created = job_created(spec, source, commit, global_id)
    await scheduler.send(created)
    await scheduler.events.wait_for(created.job, "started")

    async def both_running() -> bool:
        return all((markers / f"slow{i}.txt.pid").exists() for i in (1, 2))

    await wait_until(both_running, 300, "both datums to start")
    commands = [int((markers / f"slow{i}.txt.pid").read_text()) for i in (1, 2)]
    job = (await scheduler.api.get(f"/v1/jobs/{created.job}")).json()
    workers = [int(s["handle"]) for s in job["shards"]]
    assert all(pid_alive(p) for p in commands + workers)

    await scheduler.send(JobCancel(job=created.job, pipeline=pipeline, reason="stopped by test"))
    failed = await scheduler.events.wait_for(created.job, "failed", within=30)
    assert failed["killed"] is True
    assert failed["reason"] == "killed: stopped by test"
    assert not any(pid_alive(p) for p in commands + workers)
    info = await repos.inspect_commit(pipeline, failed["output_commit"])
    assert info.state == "finished"
    assert info.error == "killed: stopped by test"
    assert (await scheduler.api.get(f"/v1/jobs/{created.job}")).json()["state"] == "killed"


async def test_jobs_of_one_pipeline_run_in_order_and_a_queued_job_can_be_cancelled(
    scheduler: Scheduler, repos: RepoClient
) -> None:
    source, pipeline, commit, global_id = await _setup(repos, {"/a.txt": b"SLEEP=1 a"})
    spec = pipeline_spec(pipeline, source)
    first = job_created(spec, source, commit, global_id)
    queued = job_created(spec, source, commit, global_id, version=2)
    # A new salt (as --reprocess gives): the same datum runs again, after the first job.
    last = job_created({**spec, "salt": "again"}, source, commit, global_id, version=3)
    await scheduler.send(first, queued, last)
    await scheduler.events.wait_for(first.job, "started")
    await scheduler.send(JobCancel(job=queued.job, pipeline=pipeline, reason="not wanted"))

    killed = await scheduler.events.wait_for(queued.job, "failed")
    assert killed["killed"] is True
    assert killed["output_commit"] is None
    done_first = await scheduler.events.wait_for(first.job, "succeeded")
    done_last = await scheduler.events.wait_for(last.job, "succeeded")
    assert done_first["finished_at"] <= scheduler.events.of(last.job, "started")[0]["started_at"]
    assert done_last["counts"]["processed"] == 1


async def _open_commits(repos: RepoClient, repo: str) -> list[str]:
    return [c.id async for c in repos.list_commits(repo, state="open")]


async def test_a_start_that_fails_leaves_no_commit_open(
    scheduler: Scheduler, repos: RepoClient
) -> None:
    source, pipeline, commit, global_id = await _setup(repos, {"/a.txt": b"a"})
    spec = pipeline_spec(pipeline, source)
    gone = job_created(spec, source, "f" * 32, global_id)  # an input commit that is not there
    await scheduler.send(gone)
    failed = await scheduler.events.wait_for(gone.job, "failed")
    assert "f" * 32 in failed["reason"]

    # Whatever its start opened is finished or out of the way: the next job runs.
    good = job_created(spec, source, commit, global_id, version=2)
    await scheduler.send(good)
    await scheduler.events.wait_for(good.job, "succeeded")
    assert await _open_commits(repos, pipeline) == []


async def test_a_commit_an_ended_job_left_open_is_abandoned(
    scheduler: Scheduler, repos: RepoClient
) -> None:
    source, pipeline, commit, global_id = await _setup(repos, {"/a.txt": b"a"})
    spec = pipeline_spec(pipeline, source)
    first = job_created(spec, source, commit, global_id)
    await scheduler.send(first)
    await scheduler.events.wait_for(first.job, "succeeded")
    # As a start request of that job would have left it, had it been cancelled in flight.
    left = await repos.start_commit(
        pipeline, META_BRANCH, description=f"tusk job {first.job} (meta)"
    )

    second = job_created(spec, source, commit, global_id, version=2)
    await scheduler.send(second)
    await scheduler.events.wait_for(second.job, "succeeded")
    with pytest.raises(NotFound):
        await repos.inspect_commit(pipeline, left.id)
    assert await _open_commits(repos, pipeline) == []


async def test_a_commit_that_is_no_jobs_fails_the_job_naming_it(
    scheduler: Scheduler, repos: RepoClient
) -> None:
    source, pipeline, commit, global_id = await _setup(repos, {"/a.txt": b"a"})
    someone = await repos.start_commit(pipeline, "master", description="by hand")
    created = job_created(pipeline_spec(pipeline, source), source, commit, global_id)
    await scheduler.send(created)
    failed = await scheduler.events.wait_for(created.job, "failed")
    assert f"has an open commit {someone.id} that is not this job's" in failed["reason"]
    assert (await repos.inspect_commit(pipeline, someone.id)).state == "open"
    assert await _open_commits(repos, pipeline) == [someone.id]  # its meta commit is finished


async def test_unknown_jobs_and_datums_answer_404(scheduler: Scheduler) -> None:
    for path in (
        "/v1/jobs/nope",
        "/v1/jobs/nope/datums",
        "/v1/jobs/nope/logs",
        "/v1/jobs/nope/datums/abc",
        "/v1/jobs/nope/datums/abc/logs",
    ):
        response = await scheduler.api.get(path)
        assert response.status_code == 404, path
        assert "not found" in response.json()["error"]
    assert (await scheduler.api.get("/healthz")).json() == {"status": "ok"}
    assert (await scheduler.api.get("/readyz")).json() == {"status": "ready"}


async def test_job_timeout_fails_the_job_and_stops_its_workers(
    scheduler: Scheduler, repos: RepoClient, markers: Path
) -> None:
    source, pipeline, commit, global_id = await _setup(repos, {"/a.txt": b"SLEEP=600"})
    spec = pipeline_spec(pipeline, source, markers=markers, job_timeout="5s", datum_timeout="1h")
    created = job_created(spec, source, commit, global_id)
    await scheduler.send(created)

    failed = await scheduler.events.wait_for(created.job, "failed", within=300)
    assert failed["killed"] is False
    assert failed["reason"] == "the job timed out (job_timeout 5s)"
    # On a loaded machine the command may not have started within 5 s: whether it ran or not,
    # nothing of the job may be left running.
    assert processes_of_job(created.job) == []
    if (markers / "a.txt.pid").exists():
        assert not pid_alive(int((markers / "a.txt.pid").read_text()))
    assert (await repos.inspect_commit(pipeline, failed["output_commit"])).error


async def test_the_api_and_metrics_need_a_token_when_tokens_are_set(scheduler: Scheduler) -> None:
    settings = scheduler.context.settings.model_copy(update={"api_tokens": frozenset({"s3cret"})})
    app = create_app(settings, context=scheduler.context)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://scheduler") as api:
        denied = await api.get("/v1/jobs/nope")
        assert denied.status_code == 401
        assert "bearer token" in denied.json()["error"]
        assert (await api.get("/healthz")).status_code == 200
        assert (await api.get("/metrics")).status_code == 401
        metrics = await api.get("/metrics", headers={"Authorization": "Bearer s3cret"})
        assert metrics.status_code == 200
        allowed = await api.get("/v1/jobs/nope", headers={"Authorization": "Bearer s3cret"})
        assert allowed.status_code == 404
        bad = await api.get("/v1/jobs/no%20pe", headers={"Authorization": "Bearer s3cret"})
        assert bad.status_code == 400
        assert bad.json()["code"] == "invalid_argument"


async def test_result_reader_reads_each_batch_once(
    repos: RepoClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, job = unique("pipe"), unique("job")
    await repos.create_repo(repo)
    meta = (await repos.start_commit(repo, META_BRANCH)).id

    def line(datum: str, state: Literal["success", "failed"], job_id: str = job) -> bytes:
        return result_line(job_id, datum, state, log_tail=f"log of {datum}")

    first = results_batch_path(job, 0, "run1", 0)
    second = results_batch_path(job, 1, "run2", 0)
    await repos.put_files(
        repo,
        meta,
        [
            (first, line("a", "success") + b"{not a result\n" + line("b", "success", "other")),
            (second, line("b", "failed") + line("unwanted", "success")),
        ],
    )
    reads: list[str] = []
    get_file = repos.get_file

    def counted(name: str, ref: str, path: str, **options: Any) -> AsyncGenerator[bytes, None]:
        reads.append(path)
        return get_file(name, ref, path, **options)

    monkeypatch.setattr(repos, "get_file", counted)
    reader = ResultReader(repos, log_tail_bytes=4)
    seen: set[str] = set()

    found = await reader.collect(repo, meta, job, {"a", "b", "c"}, seen)

    assert sorted((c.result.datum, c.result.state, c.log_tail) for c in found) == [
        ("a", "success", "of a"),  # the tail cut to the reader's 4 bytes
        ("b", "failed", "of b"),  # the line naming another job is ignored
    ]
    assert seen == {first, second}
    assert sorted(reads) == sorted(seen)

    third = results_batch_path(job, 0, "run3", 0)
    await repos.put_file(repo, meta, third, line("c", "success"))
    reads.clear()
    found = await reader.collect(repo, meta, job, {"c"}, seen)
    assert [c.result.datum for c in found] == ["c"]
    assert reads == [third]  # the batches read before are not read again
