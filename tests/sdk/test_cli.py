"""`tusk context`, `tusk status` and `tusk model add/remove/sources`, run as a user runs them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.cli.conftest import TUSK, clean_env, free_port
from tests.inference import models
from tests.sdk.conftest import Services
from tusk.client.repo import RepoClient


def tusk_cli(*args: str, config: Path, check: bool = True, **env: str
             ) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(TUSK), *args], capture_output=True, text=True, timeout=120,
                            env=clean_env(TUSK_CONFIG_DIR=str(config), **env))
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_contexts_point_every_command_at_a_deployment(services: Services, tmp_path: Path
                                                      ) -> None:
    config = tmp_path / "config"
    down = f"http://127.0.0.1:{free_port()}"
    tusk_cli("context", "set", "nowhere", "--repo-url", down, "--trigger-url", down,
             "--scheduler-url", down, "--inference-url", down, config=config)
    tusk_cli("context", "set", "base", "--url", "http://tusk.example.com:9000", config=config)
    tusk_cli("context", "set", "here", "--repo-url", services.repo, "--trigger-url",
             services.trigger, "--scheduler-url", services.scheduler, "--inference-url",
             services.inference, "--token", "secret", config=config)
    listed = json.loads(tusk_cli("context", "list", "--json", config=config).stdout)
    assert listed["current"] == "nowhere"  # the first one saved
    assert listed["contexts"]["base"]["repo_url"] == "http://tusk.example.com:8081"
    assert listed["contexts"]["base"]["inference_url"] == "http://tusk.example.com:8080"
    assert "token" not in listed["contexts"]["here"]  # never printed
    assert (config / "contexts.json").stat().st_mode & 0o777 == 0o600

    unreachable = tusk_cli("repo", "list", config=config, check=False)
    assert unreachable.returncode == 1
    assert "cannot reach the repo service" in unreachable.stderr

    tusk_cli("context", "use", "here", config=config)
    tusk_cli("repo", "create", "ctx-repo", config=config)
    assert "ctx-repo" in tusk_cli("repo", "list", config=config).stdout
    # A variable still wins over the context, for one command.
    overridden = tusk_cli("repo", "list", config=config, check=False, TUSK_REPO_URL=down)
    assert "cannot reach" in overridden.stderr

    status = json.loads(tusk_cli("status", "--json", config=config).stdout)
    rows = {row["service"]: row for row in status["services"]}
    assert set(rows) == {"repo", "trigger", "scheduler", "inference"}
    assert all(row["up"] for row in rows.values())
    assert rows["repo"]["database"].startswith("sqlite+aiosqlite://")
    assert rows["repo"]["bus"] == "memory"
    assert rows["scheduler"]["extra"] == {"runner": "local"}
    table = tusk_cli("status", config=config).stdout
    assert "repo" in table
    assert "up" in table

    tusk_cli("context", "use", "nowhere", config=config)
    status_down = tusk_cli("status", config=config, check=False)
    assert status_down.returncode == 1
    assert "down" in status_down.stdout

    missing = tusk_cli("context", "use", "elsewhere", config=config, check=False)
    assert "no context 'elsewhere'" in missing.stderr
    no_url = tusk_cli("context", "set", "empty", config=config, check=False)
    assert "give --url" in no_url.stderr
    bad_url = tusk_cli("context", "set", "bad", "--repo-url", "ftp://x", config=config,
                       check=False)
    assert "http://" in bad_url.stderr
    tusk_cli("context", "remove", "nowhere", config=config)
    assert "nowhere" not in tusk_cli("context", "list", config=config).stdout


async def test_model_add_list_remove(services: Services, tmp_path: Path) -> None:
    async with RepoClient(services.repo) as repos:
        await repos.create_repo("cli-models")
        commit = await repos.start_commit("cli-models")
        await repos.put_file("cli-models", commit.id, "/m.onnx", models.affine())
        await repos.finish_commit("cli-models", commit.id)
    env = {"TUSK_REPO_URL": services.repo, "TUSK_INFERENCE_URL": services.inference}
    config = tmp_path / "config"
    added = tusk_cli("model", "add", "cli-affine", "cli-models@master:/m.onnx", config=config,
                     **env)
    assert "serving model cli-affine" in added.stderr
    sources = json.loads(tusk_cli("model", "sources", "--json", config=config, **env).stdout)
    assert {"name": "cli-affine", "source": "cli-models@master:/m.onnx", "batching": None,
            "origin": "runtime"} in sources
    assert "cli-affine" in tusk_cli("model", "list", config=config, **env).stdout
    clash = tusk_cli("model", "add", "cli-affine", "cli-models@master:/other.onnx",
                     config=config, check=False, **env)
    assert "--replace" in clash.stderr
    bad = tusk_cli("model", "add", "x", "cli-models@master", config=config, check=False, **env)
    assert "names no file" in bad.stderr
    tusk_cli("model", "remove", "cli-affine", config=config, **env)
    assert "cli-affine" not in tusk_cli("model", "sources", config=config, **env).stdout
