"""Job events stay small whatever a spec's free text holds, and a spec whose jobs could not be
published is refused when it is stored."""

from __future__ import annotations

import json

from tests.repo.helpers import error, ok
from tests.trigger.conftest import Harness
from tests.trigger.test_pipelines import spec
from tusk.events.bus import encode
from tusk.events.envelope import Envelope
from tusk.events.types import JobCreated
from tusk.wire.specs import spec_digest


async def test_the_probes_spec_makes_a_small_job_event(harness: Harness) -> None:
    h = harness
    await h.repos.create_repo("raw")
    # The probe's spec: ~680 KB of non-ASCII description, under the 1 MiB body limit.
    body = json.dumps(json.loads(spec(description="é" * 340_000)), ensure_ascii=False).encode()
    assert 600_000 < len(body) < 1 << 20
    ok(await h.api.post("/v1/pipelines", content=body), 201)
    await h.commit("raw", {"/a": b"1"})

    async def job_created() -> list[JobCreated]:
        return [e.payload() for e in await h.job_events() if e.type == JobCreated.type]  # type: ignore[misc]

    (event,) = await h.eventually(job_created)
    # The event names the spec; the trigger serves it by that name.
    assert "spec" not in event.model_dump()
    version = ok(await h.api.get(f"/v1/pipelines/clean/versions/{event.version}"))
    assert version["digest"] == event.spec_digest
    assert version["spec"]["description"] == "é" * 340_000  # the whole document, as stored
    assert version["spec"]["transform"]["cmd"] == ["python3", "-c", "pass"]
    assert spec_digest(version["spec"]) == event.spec_digest
    envelope = next(e for e in await h.job_events() if e.type == JobCreated.type)
    assert len(encode(envelope).value or b"") < 2_000


async def test_job_events_stay_small_whatever_the_runnable_spec_holds(harness: Harness) -> None:
    h = harness
    await h.repos.create_repo("raw")
    # Just under the stored-spec bound: what a v1 event would have carried inline.
    body = spec(transform={"cmd": ["true"], "env": {"BLOB": "é" * 100_000}})
    ok(await h.api.post("/v1/pipelines", content=body), 201)
    await h.commit("raw", {"/a": b"1"})

    async def job_created() -> list[Envelope]:
        return [e for e in await h.job_events() if e.type == JobCreated.type]

    (envelope,) = await h.eventually(job_created)
    assert len(encode(envelope).value or b"") < 2_000


async def test_a_version_that_does_not_exist_is_a_404_naming_the_versions(
    harness: Harness,
) -> None:
    h = harness
    await h.repos.create_repo("raw")
    ok(await h.api.post("/v1/pipelines", content=spec()), 201)
    error(await h.api.get("/v1/pipelines/clean/versions/2"), 404, "versions 1 to 1")
    error(await h.api.get("/v1/pipelines/nope/versions/1"), 404, "pipeline 'nope' not found")
    error(await h.api.get("/v1/pipelines/clean/versions/0"), 400, "version")


async def test_a_spec_whose_jobs_would_not_fit_an_event_is_refused(harness: Harness) -> None:
    h = harness
    await h.repos.create_repo("raw")
    big_env = {"transform": {"cmd": ["true"], "env": {"BLOB": "x" * 300_000}}}
    body = spec(**big_env)
    error(await h.api.post("/v1/pipelines", content=body), 413, "over the 262144-byte limit")
    assert ok(await h.api.get("/v1/pipelines")) == []
    ok(await h.api.post("/v1/pipelines", content=spec()), 201)
    error(
        await h.api.put("/v1/pipelines/clean", content=spec(**big_env)),
        413,
        "without its description",
    )
