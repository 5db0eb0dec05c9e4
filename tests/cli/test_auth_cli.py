"""`tusk auth` against a real repo service with authentication on, and `tusk up` refusing a
token setting that holds no token."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.backing.common import free_port
from tests.cli.conftest import TUSK, clean_env
from tests.scheduler.conftest import start_server, wait_healthy

ROOT = "root-token-for-cli-tests"


@pytest.fixture(scope="module")
def repo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("auth-cli")
    port = free_port()
    env = clean_env(TUSK_DATA_DIR=str(data), TUSK_API_TOKENS=ROOT)
    process = start_server("tusk_repo.app:create_app", port, env, data / "server.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, "the repo service")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def tusk(url: str, token: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = clean_env(TUSK_REPO_URL=url, **({"TUSK_TOKEN": token} if token else {}))
    return subprocess.run(
        [str(TUSK), *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )


def test_tokens_roles_and_audit_from_the_cli(repo_url: str) -> None:
    refused = tusk(repo_url, None, "auth", "whoami")
    assert refused.returncode == 1
    assert "missing bearer token (set TUSK_TOKEN" in refused.stderr

    made = tusk(repo_url, ROOT, "auth", "token", "create", "alice", "-d", "laptop", "--expires",
                "90d")  # fmt: skip
    assert made.returncode == 0, made.stderr
    alice = made.stdout.strip()
    assert alice.startswith("tusk_")
    assert "shown only now" in made.stderr

    assert tusk(repo_url, alice, "auth", "whoami").stdout.strip() == "alice"
    assert tusk(repo_url, alice, "repo", "create", "raw").returncode == 0
    me = json.loads(tusk(repo_url, alice, "auth", "whoami", "--json").stdout)
    assert me["grants"] == [{"role": "owner", "resource": "repo:raw"}]

    bob = tusk(repo_url, ROOT, "auth", "token", "create", "bob").stdout.strip()
    denied = tusk(repo_url, bob, "ls", "raw@master")
    assert denied.returncode == 1
    assert "needs the reader role on repo:raw" in denied.stderr
    granted = tusk(repo_url, alice, "auth", "grant", "bob", "reader", "repo:raw")
    assert granted.returncode == 0, granted.stderr
    roles = json.loads(tusk(repo_url, alice, "auth", "roles", "--json").stdout)
    assert {(r["identity"], r["role"], r["resource"]) for r in roles} == {
        ("alice", "owner", "repo:raw"),
        ("bob", "reader", "repo:raw"),
    }
    bad = tusk(repo_url, alice, "auth", "grant", "bob", "reader", "raw")
    assert bad.returncode == 1
    assert "repo:NAME or pipeline:NAME" in bad.stderr

    tokens = json.loads(tusk(repo_url, ROOT, "auth", "token", "list", "--json").stdout)
    bob_id = next(t["id"] for t in tokens if t["identity"] == "bob")
    assert tusk(repo_url, ROOT, "auth", "token", "revoke", bob_id).returncode == 0
    assert "revoked" in tusk(repo_url, bob, "auth", "whoami").stderr

    audit = json.loads(tusk(repo_url, ROOT, "auth", "audit", "-i", "alice", "--json").stdout)
    assert {(e["action"], e["resource"]) for e in audit} >= {
        ("POST", "repo:raw"),  # the repo's creation and the grant on it
    }
    assert "admin role" in tusk(repo_url, alice, "auth", "audit").stderr


def test_up_refuses_a_token_setting_that_holds_no_token(tmp_path: Path) -> None:
    env = clean_env(TUSK_DATA_DIR=str(tmp_path), TUSK_API_TOKENS=" , ")
    for name in ("REPO", "TRIGGER", "SCHEDULER", "INFERENCE"):
        env[f"TUSK_{name}_PORT"] = str(free_port())
    result = subprocess.run(
        [str(TUSK), "up"], capture_output=True, text=True, timeout=120, env=env, check=False
    )
    assert result.returncode != 0
    assert "TUSK_API_TOKENS is set but holds no token" in result.stdout + result.stderr
