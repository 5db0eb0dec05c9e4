"""Roles on pipelines, checked by the trigger through the repo service (whoami)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tusk.client.repo import RepoClient
from tusk.events.memory import MemoryBus
from tusk_repo.app import create_app as create_repo_app
from tusk_repo.context import Context as RepoContext
from tusk_trigger.app import create_app
from tusk_trigger.config import TriggerSettings
from tusk_trigger.context import build_context

ROOT = "root-token-for-trigger-tests"
SPEC = """
pipeline: {name: edges}
input: {pfs: {repo: raw, glob: '/*'}}
transform: {cmd: ['true']}
"""


@dataclass
class Secured:
    root: RepoClient  # the repo service, as an admin
    trigger: httpx.AsyncClient  # the trigger's API, without a token

    async def token(self, identity: str) -> dict[str, str]:
        created = await self.root.create_token(identity)
        return {"Authorization": f"Bearer {created.token}"}


@pytest.fixture
async def secured(repo_ctx: RepoContext, tmp_path: Path) -> AsyncIterator[Secured]:
    repo_settings = repo_ctx.settings.model_copy(update={"api_tokens": frozenset({ROOT})})
    transport = httpx.ASGITransport(app=create_repo_app(repo_settings, context=repo_ctx))
    settings = TriggerSettings(  # type: ignore[call-arg]
        data_dir=tmp_path,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'trigger.db'}",
        api_tokens=ROOT,
        auth_cache_seconds=0,  # revocations seen at once
    )
    async with (
        RepoClient("http://repo", ROOT, transport=transport) as repos,
        build_context(settings, MemoryBus(), repos) as context,
    ):
        app = create_app(context=context)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://trigger"
        ) as api:
            yield Secured(repos, api)


async def test_pipeline_roles(secured: Secured) -> None:
    api, root = secured.trigger, secured.root
    await root.create_repo("raw")
    alice, bob = await secured.token("alice"), await secured.token("bob")

    refused = await api.post("/v1/pipelines", content=SPEC, headers=alice)
    assert refused.status_code == 403, refused.text
    assert "reader" in refused.json()["error"]
    assert "repo:raw" in refused.json()["error"]

    await root.grant_role("alice", "reader", "repo:raw")
    created = await api.post("/v1/pipelines", content=SPEC, headers=alice)
    assert created.status_code == 201, created.text
    owned = {r.resource for r in await root.list_roles(identity="alice")}
    assert owned == {"repo:raw", "pipeline:edges", "repo:edges"}

    assert (await api.get("/v1/pipelines", headers=bob)).json() == []
    assert (await api.get("/v1/pipelines/edges", headers=bob)).status_code == 403
    assert (await api.get("/v1/jobs", params={"pipeline": "edges"}, headers=bob)).status_code == 403
    await root.grant_role("bob", "reader", "pipeline:edges")
    assert (await api.get("/v1/pipelines/edges", headers=bob)).status_code == 200
    assert [p["name"] for p in (await api.get("/v1/pipelines", headers=bob)).json()] == ["edges"]
    assert (await api.post("/v1/pipelines/edges/stop", headers=bob)).status_code == 403
    assert (await api.put("/v1/pipelines/edges", content=SPEC, headers=bob)).status_code == 403
    assert (await api.delete("/v1/pipelines/edges", headers=bob)).status_code == 403
    assert (await api.post("/v1/pipelines/edges/stop", headers=alice)).status_code == 200

    for headers in ({}, {"Authorization": "Bearer wrong"}):
        assert (await api.get("/v1/pipelines", headers=headers)).status_code == 401
    bob_tokens = await root.list_tokens(identity="bob")
    await root.revoke_token(bob_tokens[0].id)
    assert (await api.get("/v1/pipelines/edges", headers=bob)).status_code == 401
    assert (await api.delete("/v1/pipelines/edges", headers=alice)).status_code == 204

    # Pipeline writes are in the audit log the repo service keeps, refused ones too.
    logged = [(e.identity, e.action, e.target, e.status) for e in await root.audit(limit=1000)]
    assert ("alice", "POST", "/v1/pipelines", 403) in logged
    assert ("alice", "POST", "/v1/pipelines", 201) in logged
    assert ("bob", "DELETE", "/v1/pipelines/edges", 403) in logged
    assert ("alice", "POST", "/v1/pipelines/edges/stop", 200) in logged
    assert ("alice", "DELETE", "/v1/pipelines/edges", 204) in logged
    by_resource = await root.audit(resource="pipeline:edges", limit=1000)
    assert {e.identity for e in by_resource} >= {"alice", "bob"}
