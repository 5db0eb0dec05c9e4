"""Authorization on the repo service: tokens, roles per repo, worker credentials, audit log.
Run on both backends (SQLite + directory, PostgreSQL + S3) like every repo-service test."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import text

from tests.repo.helpers import commit_files, error, ok
from tests.routes import routes
from tusk.auth import tokens
from tusk.auth.principal import Principal
from tusk_repo.app import create_app
from tusk_repo.config import RepoSettings
from tusk_repo.context import Context

ROOT = "root-token-for-tests"

ClientFactory = Callable[[str | None], Any]


@pytest.fixture
def as_token(repo_ctx: Context) -> ClientFactory:
    """A client of a repo app with authentication on, sending the given token."""
    settings = repo_ctx.settings.model_copy(update={"api_tokens": frozenset({ROOT})})
    app = create_app(settings, context=repo_ctx)

    @asynccontextmanager
    async def client(token: str | None) -> AsyncIterator[httpx.AsyncClient]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://repo", headers=headers
        ) as c:
            yield c

    return client


async def grant(client: httpx.AsyncClient, identity: str, role: str, resource: str) -> None:
    body = {"identity": identity, "role": role, "resource": resource}
    ok(await client.post("/v1/auth/roles", json=body), 201)


async def new_token(root: httpx.AsyncClient, identity: str) -> str:
    created = ok(await root.post("/v1/auth/tokens", json={"identity": identity}), 201)
    return str(created["token"])


# --- settings --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [" , ", ",", " ", ",,,"])
def test_a_token_setting_that_looks_set_but_is_empty_is_refused(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TUSK_API_TOKENS", value)
    with pytest.raises(ValidationError, match="TUSK_API_TOKENS is set but holds no token"):
        RepoSettings()


def test_an_unset_or_empty_token_setting_turns_authentication_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TUSK_API_TOKENS", "")
    assert RepoSettings().api_tokens == frozenset()
    monkeypatch.setenv("TUSK_API_TOKENS", " a , b ")
    assert RepoSettings().api_tokens == frozenset({"a", "b"})


async def test_without_tokens_everyone_is_an_anonymous_admin(client: httpx.AsyncClient) -> None:
    me = ok(await client.get("/v1/auth/whoami"))
    assert me["name"] == "anonymous"
    assert me["admin"] is True


# --- authentication on every route -----------------------------------------------------------


def _concrete(path: str) -> str:
    values = {"repo": "r1", "ref": "master", "branch": "master", "token_id": "0" * 16}
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m[1], "x"), path)


async def test_every_route_refuses_a_missing_or_wrong_token(as_token: ClientFactory) -> None:
    app = create_app(RepoSettings(api_tokens=ROOT))  # type: ignore[call-arg]
    public = app.state.public_paths
    checked = 0
    for route in routes(app):
        if route.path in public or route.dependant is None:
            continue
        for method in route.methods:
            url = _concrete(route.path)
            for token in (None, "wrong", "tusk_0123456789abcdef_" + "A" * 43):
                async with as_token(token) as c:
                    response = await c.request(method, url)
                error(response, 401, "token")
                assert response.headers["www-authenticate"] == "Bearer"
            checked += 1
    assert checked >= 25
    for trick in ("//metrics", "/healthz/../v1/repos", "/metrics", "/v1/repos/"):
        async with as_token(None) as c:
            assert (await c.get(trick)).status_code == 401, trick


async def test_health_and_docs_answer_without_a_token(as_token: ClientFactory) -> None:
    async with as_token(None) as c:
        ok(await c.get("/healthz"))
        ok(await c.get("/openapi.json"))


# --- roles -----------------------------------------------------------------------------------


async def test_roles_on_a_repo_decide_who_reads_writes_and_deletes(
    as_token: ClientFactory,
) -> None:
    async with as_token(ROOT) as root:
        alice_token = await new_token(root, "alice")
        bob_token = await new_token(root, "bob")
    async with as_token(alice_token) as alice, as_token(bob_token) as bob:
        ok(await alice.post("/v1/repos", json={"name": "secret"}), 201)
        await commit_files(alice, "secret", {"/a.txt": b"alice's"})
        me = ok(await alice.get("/v1/auth/whoami"))
        assert me["name"] == "alice"
        assert me["admin"] is False
        assert me["grants"] == [{"role": "owner", "resource": "repo:secret"}]

        # bob: no role, nothing to see
        assert ok(await bob.get("/v1/repos")) == []
        error(await bob.get("/v1/repos/secret"), 403, "reader", "repo:secret")
        error(
            await bob.get("/v1/repos/secret/commits/master/file", params={"path": "/a.txt"}),
            403,
        )
        error(
            await bob.post("/v1/auth/roles", json={"identity": "bob", "role": "owner",
                                                   "resource": "repo:secret"}),
            403,
            "owner",
        )  # fmt: skip

        # reader: reads, cannot write
        await grant(alice, "bob", "reader", "repo:secret")
        assert [r["name"] for r in ok(await bob.get("/v1/repos"))] == ["secret"]
        got = await bob.get("/v1/repos/secret/commits/master/file", params={"path": "/a.txt"})
        assert got.content == b"alice's"
        error(await bob.post("/v1/repos/secret/commits", json={}), 403, "writer")

        # writer: writes, cannot delete the repo or grant
        await grant(alice, "bob", "writer", "repo:secret")
        await commit_files(bob, "secret", {"/b.txt": b"bob's"})
        error(await bob.delete("/v1/repos/secret"), 403, "owner")

        # revoked: back to nothing, at once
        ok(
            await alice.delete(
                "/v1/auth/roles", params={"identity": "bob", "resource": "repo:secret"}
            ),
            204,
        )
        error(await bob.get("/v1/repos/secret"), 403)

        # only admins make tokens
        error(await alice.post("/v1/auth/tokens", json={"identity": "mallory"}), 403, "admin")
        ok(await alice.delete("/v1/repos/secret"), 204)


async def test_a_role_on_every_repo_and_the_admin_role(as_token: ClientFactory) -> None:
    async with as_token(ROOT) as root:
        ok(await root.post("/v1/repos", json={"name": "one"}), 201)
        ok(await root.post("/v1/repos", json={"name": "two"}), 201)
        carol_token = await new_token(root, "carol")
        await grant(root, "carol", "reader", "repo:*")
        async with as_token(carol_token) as carol:
            assert {r["name"] for r in ok(await carol.get("/v1/repos"))} == {"one", "two"}
            error(await carol.delete("/v1/repos/one"), 403)
            ok(await root.post("/v1/auth/roles", json={"identity": "carol", "role": "admin"}), 201)
            ok(await carol.delete("/v1/repos/one"), 204)
            error(
                await root.post("/v1/auth/roles", json={"identity": "carol", "role": "owner"}),
                400,
                "need one",
            )


async def test_a_revoked_or_expired_token_stops_working(
    as_token: ClientFactory, repo_ctx: Context
) -> None:
    async with as_token(ROOT) as root:
        created = ok(await root.post("/v1/auth/tokens", json={"identity": "dave"}), 201)
        async with as_token(created["token"]) as dave:
            ok(await dave.get("/v1/auth/whoami"))
            ok(await root.delete(f"/v1/auth/tokens/{created['id']}"), 204)
            error(await dave.get("/v1/auth/whoami"), 401, "revoked")
            ok(await root.delete(f"/v1/auth/tokens/{created['id']}"), 204)  # idempotent
        listed = ok(await root.get("/v1/auth/tokens", params={"revoked": "true"}))
        assert [t["revoked_at"] is not None for t in listed if t["identity"] == "dave"] == [True]

        expiring = ok(
            await root.post("/v1/auth/tokens", json={"identity": "erin", "expires_in_seconds": 60}),
            201,
        )
        async with repo_ctx.db.session() as session:
            await session.execute(
                text("UPDATE repo_auth_tokens SET expires_at = created_at WHERE identity = 'erin'")
            )
        create_app_verifier_forget = as_token  # (a new app: nothing remembered)
        async with create_app_verifier_forget(expiring["token"]) as erin:
            error(await erin.get("/v1/auth/whoami"), 401)


async def test_tokens_are_stored_only_as_hashes(as_token: ClientFactory, repo_ctx: Context) -> None:
    async with as_token(ROOT) as root:
        token = await new_token(root, "frank")
    async with repo_ctx.db.session(write=False) as session:
        rows = (await session.execute(text("SELECT * FROM repo_auth_tokens"))).all()
    stored = " ".join(str(value) for row in rows for value in row)
    secret = token.rsplit("_", 1)[1]
    assert secret not in stored
    assert token not in stored


# --- worker credentials ----------------------------------------------------------------------


async def test_a_worker_credential_writes_only_into_its_jobs_commits(
    as_token: ClientFactory,
) -> None:
    async with as_token(ROOT) as root:
        for name in ("raw", "other", "edges"):
            ok(await root.post("/v1/repos", json={"name": name}), 201)
        await commit_files(root, "raw", {"/in.txt": b"input"})
        await commit_files(root, "other", {"/private.txt": b"not an input"})
        output = ok(await root.post("/v1/repos/edges/commits", json={"branch": "master"}), 201)
        meta = ok(await root.post("/v1/repos/edges/commits", json={"branch": "meta"}), 201)
        job = "a" * 32
        issued = ok(
            await root.post(
                "/v1/auth/worker-tokens",
                json={
                    "job": job,
                    "pipeline": "edges",
                    "output_repo": "edges",
                    "read_repos": ["raw"],
                    "write_commits": [output["id"], meta["id"]],
                },
            ),
            201,
        )
    async with as_token(issued["token"]) as worker:
        me = ok(await worker.get("/v1/auth/whoami"))
        assert me["name"] == "pipeline:edges"
        assert me["worker"]["pipeline"] == "edges"
        got = await worker.get("/v1/repos/raw/commits/master/file", params={"path": "/in.txt"})
        assert got.content == b"input"
        ok(
            await worker.put(
                f"/v1/repos/edges/commits/{output['id']}/file",
                params={"path": "/out.txt"},
                content=b"result",
            ),
            201,
        )
        # Not its commit, not by branch, not another repo, nothing but files.
        for method, url, kwargs in [
            ("PUT", "/v1/repos/edges/commits/master/file", {"params": {"path": "/x"}}),
            ("PUT", "/v1/repos/other/commits/master/file", {"params": {"path": "/x"}}),
            ("POST", f"/v1/repos/edges/commits/{output['id']}/finish", {}),
            ("DELETE", f"/v1/repos/edges/commits/{output['id']}", {}),
            ("DELETE", "/v1/repos/other", {}),
            ("DELETE", "/v1/repos/edges", {}),
            ("POST", "/v1/repos", {"json": {"name": "mine"}}),
            ("GET", "/v1/repos/other/commits/master/file", {"params": {"path": "/private.txt"}}),
            ("POST", "/v1/auth/tokens", {"json": {"identity": "x"}}),
        ]:
            response = await worker.request(method, url, content=b"x", **kwargs)
            error(response, 403)
        async with as_token(ROOT) as root:
            ok(await root.delete(f"/v1/auth/worker-tokens/{job}"), 204)
        error(await worker.get("/v1/auth/whoami"), 401)


# --- audit -----------------------------------------------------------------------------------


async def test_writes_and_grants_are_in_the_audit_log(as_token: ClientFactory) -> None:
    async with as_token(ROOT) as root:
        grace_token = await new_token(root, "grace")
        async with as_token(grace_token) as grace:
            ok(await grace.post("/v1/repos", json={"name": "logged"}), 201)
            await commit_files(grace, "logged", {"/f": b"x"})
            await grant(grace, "henry", "reader", "repo:logged")
            error(await grace.get("/v1/auth/audit"), 403, "admin")
            error(await grace.delete("/v1/repos/nope"), 403)
        entries = ok(await root.get("/v1/auth/audit", params={"identity": "grace"}))
        actions = [(e["action"], e["target"].split("?")[0], e["status"]) for e in reversed(entries)]
        assert ("POST", "/v1/repos", 201) in actions
        assert any(a[0] == "PUT" and a[1].endswith("/file") and a[2] == 201 for a in actions)
        assert ("POST", "/v1/auth/roles", 201) in actions
        assert ("DELETE", "/v1/repos/nope", 403) in actions
        by_resource = ok(await root.get("/v1/auth/audit", params={"resource": "repo:logged"}))
        assert {e["identity"] for e in by_resource} == {"grace"}
        assert len(by_resource) >= 4  # the grant, the commit's start, put and finish
        tokens = ok(await root.get("/v1/auth/audit", params={"identity": "admin-token-1"}))
        assert any(e["resource"] == "identity:grace" for e in tokens)
        page = ok(await root.get("/v1/auth/audit", params={"limit": 2}))
        older = ok(await root.get("/v1/auth/audit", params={"before": page[-1]["seq"]}))
        assert all(e["seq"] < page[-1]["seq"] for e in older)


async def test_docs_and_metrics_can_be_closed_or_opened(repo_ctx: Context) -> None:
    settings = repo_ctx.settings.model_copy(
        update={"api_tokens": frozenset({ROOT}), "auth_docs_public": False}
    )
    app = create_app(settings, context=repo_ctx)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://repo"
    ) as c:
        error(await c.get("/openapi.json"), 401)
        error(await c.get("/docs"), 401)
        ok(await c.get("/healthz"))
        assert (
            await c.get("/openapi.json", headers={"Authorization": f"Bearer {ROOT}"})
        ).is_success


def test_static_tokens_keep_no_secret_and_name_their_holder() -> None:
    static = tokens.StaticTokens(["first-secret", "second-secret"])
    assert "secret" not in repr(vars(static))
    assert static.match("second-secret") == Principal(name="admin-token-2", admin=True)
    assert static.match("second-secre") is None
    assert static.match("") is None
    token, token_id = tokens.new_token()
    assert tokens.token_id_of(token) == token_id
    assert tokens.token_id_of("tusk_" + token_id) is None
