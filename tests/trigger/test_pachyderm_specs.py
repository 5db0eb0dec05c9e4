"""Pachyderm's dialect through the trigger's API: camelCase specs stored in snake_case, fields
tusk cannot apply named in warnings, spouts accepted (without jobs), and datum identity kept
across updates unless the update asks to reprocess."""

from __future__ import annotations

import json

from tests.repo.helpers import error, ok
from tests.trigger.conftest import Harness

CAMEL = {
    "pipeline": {"name": "edges", "project": {"name": "vision"}},
    "input": {"pfs": {"repo": "images", "glob": "/*", "emptyFiles": True}},
    "transform": {"cmd": ["python3", "/edges.py"], "imagePullSecrets": ["regcred"]},
    "parallelismSpec": {"constant": 2},
    "egress": {"URL": "s3://bucket/dir"},
}


async def test_a_camel_case_spec_is_stored_in_snake_case_with_its_warnings(
    harness: Harness,
) -> None:
    h = harness
    await h.repos.create_project("vision")
    await h.repos.create_repo("vision/images")
    created = ok(await h.api.post("/v1/pipelines", content=json.dumps(CAMEL)), 201)
    assert created["name"] == "vision/edges"
    assert created["spec"]["input"]["pfs"]["repo"] == "vision/images"
    assert created["spec"]["input"]["pfs"]["name"] == "images"
    assert created["spec"]["parallelism_spec"] == {"constant": 2}
    assert created["spec"]["input"]["pfs"]["empty_files"] is True
    assert created["spec"]["egress"] == {"url": "s3://bucket/dir"}
    fields = [w.split(":")[0] for w in created["warnings"]]
    assert fields == ["transform.image_pull_secrets"]  # egress and the project are applied
    shown = ok(await h.api.get("/v1/pipelines/vision%2Fedges"))
    assert shown["warnings"] == created["warnings"]


async def test_a_spout_gets_its_output_repo_and_no_jobs(harness: Harness) -> None:
    h = harness
    spout = {
        "pipeline": {"name": "feed"},
        "spout": {},
        "transform": {"cmd": ["python3", "/consume.py"]},
    }
    created = ok(await h.api.post("/v1/pipelines", content=json.dumps(spout)), 201)
    assert created["input_repos"] == []
    assert created["warnings"] == []
    assert (await h.repos.inspect_repo("feed")).owner_pipeline == "feed"
    # Its commits (made by the spout itself) start no job of its own.
    commit = await h.repos.start_commit("feed", "master", pipeline="feed")
    await h.repos.finish_commit("feed", commit.id)
    ok(await h.api.post("/v1/pipelines/feed/stop"))
    ok(await h.api.post("/v1/pipelines/feed/start"))
    assert ok(await h.api.get("/v1/jobs", params={"pipeline": "feed"}))["items"] == []
    serving = {**spout, "pipeline": {"name": "feed2"}, "spout": {"service": {"internal_port": 80}}}
    assert ok(await h.api.post("/v1/pipelines", content=json.dumps(serving)), 201)["warnings"] == []


async def test_updates_keep_the_salt_unless_they_reprocess(harness: Harness) -> None:
    h = harness
    await h.repos.create_project("vision")
    await h.repos.create_repo("vision/images")
    spec = {k: v for k, v in CAMEL.items() if k != "egress"}
    first = ok(await h.api.post("/v1/pipelines", content=json.dumps(spec)), 201)
    assert "salt" not in first["spec"]
    resized = {**spec, "parallelismSpec": {"constant": 5}}
    kept = ok(await h.api.put("/v1/pipelines/vision%2Fedges", content=json.dumps(resized)))
    assert "salt" not in kept["spec"]
    salted = ok(
        await h.api.put(
            "/v1/pipelines/vision%2Fedges",
            content=json.dumps(resized),
            params={"reprocess": "true"},
        )
    )
    salt = salted["spec"]["salt"]
    again = ok(await h.api.put("/v1/pipelines/vision%2Fedges", content=json.dumps(spec)))
    assert again["spec"]["salt"] == salt  # kept: the datums processed since stay processed
    fresh = ok(
        await h.api.put(
            "/v1/pipelines/vision%2Fedges", content=json.dumps(spec), params={"reprocess": "true"}
        )
    )
    assert fresh["spec"]["salt"] not in (None, salt)


async def test_a_pipeline_in_a_missing_project_is_404_saying_how(harness: Harness) -> None:
    h = harness
    await h.repos.create_repo("images")
    spec = {
        "pipeline": {"name": "edges", "project": {"name": "ghost"}},
        "input": {"pfs": {"repo": "images", "project": "default", "glob": "/*"}},
        "transform": {"cmd": ["true"]},
    }
    error(
        await h.api.post("/v1/pipelines", content=json.dumps(spec)),
        404,
        "project 'ghost' not found",
        "tusk project create ghost",
    )
    assert ok(await h.api.get("/v1/pipelines")) == []
