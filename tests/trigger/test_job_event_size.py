"""Job events stay small whatever a spec's free text holds, and a spec whose jobs could not be
published is refused when it is stored."""

from __future__ import annotations

import json

from tests.repo.helpers import error, ok
from tests.trigger.conftest import Harness
from tests.trigger.test_pipelines import spec
from tusk.events.bus import encode
from tusk.events.types import JobCreated


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
    assert "description" not in event.spec
    assert event.spec["transform"]["cmd"] == ["python3", "-c", "pass"]
    envelope = next(e for e in await h.job_events() if e.type == JobCreated.type)
    assert len(encode(envelope).value or b"") < 10_000


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
