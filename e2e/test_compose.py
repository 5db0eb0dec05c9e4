"""docker-compose.yml for real: the project's compose file, images built from the project's own
Dockerfiles, the README's walkthrough from the host, then down and up again with nothing lost.

Run by `make e2e` (e2e/run.sh starts the engine and builds the base images first).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.common import ROOT, host_env, readme_block, run, tusk_json, wait_until

COMPOSE = ["docker", "compose", "-f", str(ROOT / "docker-compose.yml")]
ONE_SHOT = {"migrate", "s3-init"}
HEALTHY_WITHIN = 600.0  # on a cold, loaded machine Kafka's JVM alone takes minutes


def compose_services() -> list[str]:
    return run([*COMPOSE, "config", "--services"], env=os.environ.copy()).stdout.split()


def states() -> dict[str, dict[str, Any]]:
    out = run([*COMPOSE, "ps", "--all", "--format", "json"], env=os.environ.copy()).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.strip().startswith("{")]
    if len(rows) == 1 and isinstance(rows[0], list):  # older compose: one JSON array
        rows = rows[0]
    return {row["Service"]: row for row in rows}


def all_healthy() -> bool:
    current = states()
    for name in compose_services():
        row = current.get(name)
        if row is None:
            return False
        if name in ONE_SHOT:
            if row["State"] != "exited":
                return False
            assert row["ExitCode"] == 0, f"{name} exited with {row['ExitCode']}"
        elif row.get("Health") != "healthy":
            assert row["State"] == "running", f"{name} is {row['State']}: {row.get('Status')}"
            return False
    return True


def up(build: bool) -> None:
    argv = [*COMPOSE, "up", "-d", *(["--build"] if build else [])]
    run(argv, env=os.environ.copy(), timeout=3600)
    try:
        wait_until("every compose service healthy", all_healthy, HEALTHY_WITHIN, every=3)
    except AssertionError:
        run([*COMPOSE, "ps", "--all"], env=os.environ.copy(), check=False)
        run([*COMPOSE, "logs", "--tail", "60"], env=os.environ.copy(), check=False)
        raise


@pytest.fixture(scope="module")
def stack() -> Iterator[None]:
    run([*COMPOSE, "down", "-v", "--remove-orphans"], env=os.environ.copy(), check=False)
    up(build=True)
    try:
        yield
    finally:
        run([*COMPOSE, "logs", "--tail", "40"], env=os.environ.copy(), check=False)
        run([*COMPOSE, "down", "-v", "--remove-orphans"], env=os.environ.copy(), check=False)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the walkthrough's files go; `examples/` resolves as in a checkout."""
    path = tmp_path_factory.mktemp("walkthrough")
    (path / "examples").symlink_to(ROOT / "examples")
    return path


def served(model: str = "credit") -> dict[str, Any] | None:
    """The model's metadata once it serves a version (its commit in ``version``)."""
    for row in tusk_json("model", "list"):
        commit = row.get("parameters", {}).get("model_commit")
        if row.get("name") == model and commit:
            return {**row, "version": commit}
    return None


def head(ref: str) -> str:
    return str(tusk_json("commit", "inspect", ref)["id"])


def test_walkthrough_from_the_host(stack: None, workdir: Path) -> None:
    """The README's walkthrough, unchanged, with the CLI on the host: the pipelines run inside
    the scheduler's container and the model is served by the inference container."""
    script = readme_block("Deploying")
    result = run(["bash", "-euxo", "pipefail", "-c", script], cwd=workdir, timeout=1800)
    assert "success" in result.stdout
    model = served()
    assert model is not None, "no credit model served after the walkthrough"
    assert model["version"] == head("train@master")
    # tusk predict printed three limits and the lineage down to the raw commit.
    raw = head("raw@master")
    assert raw in result.stdout or raw[:12] in result.stdout


def test_a_second_day_swaps_the_model(stack: None, workdir: Path) -> None:
    before = head("train@master")
    run(
        ["python3", "examples/credit/generate.py", "--day", "2", "--rows", "2000", "--out", "day2"],
        cwd=workdir,
    )
    run(["tusk", "put", "raw@master:/day-002.csv", "-f", "day2/day-002.csv"], cwd=workdir)
    day2 = head("raw@master")
    run(["tusk", "job", "wait", "-p", "train", "-g", day2], cwd=workdir, timeout=1200)
    after = head("train@master")
    assert after != before
    wait_until(
        "inference to serve the second day's model",
        lambda: (served() or {}).get("version") == after,
        300,
    )


def test_down_and_up_keeps_everything(stack: None, workdir: Path) -> None:
    repos = {r["name"] for r in tusk_json("repo", "list")}
    pipelines = {p["name"] for p in tusk_json("pipeline", "list")}
    model = served()
    assert model is not None
    files = run(["tusk", "ls", "raw@master:/"]).stdout
    run([*COMPOSE, "down"], env=os.environ.copy())
    up(build=False)
    assert {r["name"] for r in tusk_json("repo", "list")} == repos
    assert {p["name"] for p in tusk_json("pipeline", "list")} == pipelines
    assert run(["tusk", "ls", "raw@master:/"]).stdout == files
    wait_until(
        "the same model served after the restart",
        lambda: (served() or {}).get("version") == model["version"],
        300,
    )
    prediction = run(["tusk", "predict", "credit", "--csv", "encoded.csv"], cwd=workdir)
    assert model["version"][:12] in prediction.stdout


def test_killing_the_repo_mid_put_loses_no_finished_commit(stack: None, workdir: Path) -> None:
    """A put in flight when the repo container dies may fail; every commit finished before it
    is intact after the restart, and the put run again succeeds."""
    env = host_env()
    finished = head("raw@master")
    listing = run(["tusk", "ls", "raw@master:/"], env=env).stdout
    big = workdir / "big"
    big.mkdir(exist_ok=True)
    for i in range(100):
        (big / f"part-{i:03}.bin").write_bytes(os.urandom(1 << 20))
    run(["tusk", "repo", "create", "scratch"], env=env)
    put = subprocess.Popen(
        ["tusk", "put", "scratch@master:/big", "-f", str(big), "-r"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def commit_opened() -> bool:
        return put.poll() is not None or bool(tusk_json("log", "scratch@master"))

    wait_until("the put to open its commit", commit_opened, 120, every=0.2)
    run(["docker", "kill", "tusk-repo-1"], env=os.environ.copy())
    output, _ = put.communicate(timeout=600)
    print("put while the repo died:", put.returncode, output[-2000:])
    run([*COMPOSE, "start", "repo"], env=os.environ.copy())
    wait_until("repo healthy again", lambda: states()["repo"].get("Health") == "healthy", 300, 2)
    assert head("raw@master") == finished
    assert run(["tusk", "ls", "raw@master:/"], env=env).stdout == listing
    # The interrupted commit is either finished whole or still open; the retry completes it.
    run(["tusk", "put", "scratch@master:/big", "-f", str(big), "-r"], env=env)
    if tusk_json("commit", "inspect", "scratch@master")["state"] == "open":
        run(["tusk", "commit", "finish", "scratch@master"], env=env)
    names = run(["tusk", "ls", "scratch@master:/big"], env=env).stdout
    assert names.count("part-") == 100
