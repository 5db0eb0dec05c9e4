"""The credit example from raw data to a model, through `tusk up` as a user runs it: on the
embedded defaults, and on real PostgreSQL, Kafka and S3."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import onnxruntime
import pytest

from tests.backing.common import free_port
from tests.conftest import fresh_postgres_database, s3_settings
from tusk.client.models import JobInfo
from tusk.client.pipelines import TriggerClient
from tusk.client.repo import RepoClient

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "credit"


@dataclass
class Stack:
    repos: RepoClient
    trigger: TriggerClient
    log: Path


def _env_for(settings: dict[str, object]) -> dict[str, str]:
    names = {
        "object_store_url": "TUSK_OBJECT_STORE_URL",
        "s3_endpoint_url": "TUSK_S3_ENDPOINT_URL",
        "s3_access_key_id": "TUSK_S3_ACCESS_KEY_ID",
        "s3_secret_access_key": "TUSK_S3_SECRET_ACCESS_KEY",
        "s3_region": "TUSK_S3_REGION",
    }
    return {names[k]: str(v) for k, v in settings.items()}


@pytest.fixture(params=["embedded", "real"])
async def stack(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stack]:
    ports = {
        name: free_port() for name in ("REPO", "TRIGGER", "SCHEDULER", "INFERENCE", "S3_GATEWAY")
    }
    env = {**os.environ, **{f"TUSK_{n}_PORT": str(p) for n, p in ports.items()}}
    # As a user runs it: from the project's environment, so the specs' python3 is that one.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    if request.param == "real":
        postgres, s3, kafka = (request.getfixturevalue(n) for n in ("postgres", "s3", "kafka"))
        bucket = f"e2e-{uuid.uuid4().hex[:12]}"
        s3.create_bucket(bucket)
        env.update(_env_for(s3_settings(s3, bucket)))
        env["TUSK_DATABASE_URL"] = await fresh_postgres_database(postgres)
        env["TUSK_KAFKA_BOOTSTRAP"] = kafka.bootstrap
    log = tmp_path / "tusk.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "tusk"), "up", "--data-dir", str(tmp_path / "data")],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    urls = {n: f"http://127.0.0.1:{p}" for n, p in ports.items()}
    try:
        async with httpx.AsyncClient() as probe:
            for _ in range(300):
                try:
                    if (await probe.get(f"{urls['SCHEDULER']}/healthz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert process.poll() is None, log.read_text()[-5000:]
                await asyncio.sleep(0.1)
            else:
                pytest.fail(f"tusk up did not start:\n{log.read_text()[-5000:]}")
        async with RepoClient(urls["REPO"]) as repos, TriggerClient(urls["TRIGGER"]) as trigger:
            yield Stack(repos, trigger, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail("tusk up did not stop within 60 s of SIGTERM")
        assert process.returncode == 0, log.read_text()[-5000:]


async def _job_for(stack: Stack, pipeline: str, change: str, timeout: float = 120) -> JobInfo:
    """The job of ``pipeline`` caused by the change ``change`` (a global id), once it ended."""
    async with asyncio.timeout(timeout):
        while True:
            jobs = [j async for j in stack.trigger.list_jobs(pipeline=pipeline)]
            job = next((j for j in jobs if j.global_id == change), None)
            if job is not None and job.ended:
                assert job.state == "success", (job, stack.log.read_text()[-5000:])
                return job
            await asyncio.sleep(0.2)


def _generate(day: int, out: Path) -> Path:
    subprocess.run(
        [
            sys.executable,
            str(EXAMPLE / "generate.py"),
            "--day",
            str(day),
            "--rows",
            "1500",
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    return out / f"day-{day:03d}.csv"


async def test_raw_data_to_model_with_lineage(stack: Stack, tmp_path: Path) -> None:
    repos, trigger = stack.repos, stack.trigger
    await repos.create_repo("raw")
    for step in ("preprocess", "train"):
        await trigger.create_pipeline((EXAMPLE / f"{step}.yaml").read_bytes())

    day1 = _generate(1, tmp_path)
    commit = await repos.start_commit("raw")
    await repos.put_file("raw", commit.id, "/day-001.csv", day1)
    raw1 = await repos.finish_commit("raw", commit.id)
    await _job_for(stack, "preprocess", raw1.global_id)
    train1 = await _job_for(stack, "train", raw1.global_id)

    model = b"".join([p async for p in repos.get_file("train", "master", "/model.onnx")])
    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["features"]
    assert [o.name for o in session.get_outputs()] == ["credit_limit"]

    # Lineage: the model commit came from a preprocess commit, which came from the raw commit.
    model_commit = await repos.inspect_commit("train", "master")
    assert model_commit.id == train1.output_commit
    assert model_commit.global_id == raw1.global_id
    parents = {p.repo: p.commit for p in model_commit.provenance}
    assert set(parents) == {"preprocess", "train_weekly"}
    preprocessed = await repos.inspect_commit("preprocess", parents["preprocess"])
    assert [(p.repo, p.commit) for p in preprocessed.provenance] == [("raw", raw1.id)]
    down = await repos.subvenance("raw", raw1.id)
    assert [(d.repo, d.commit) for d in down] == [("preprocess", preprocessed.id)]

    # A second day of data re-runs both pipelines by themselves; the model changes.
    commit = await repos.start_commit("raw")
    await repos.put_file("raw", commit.id, "/day-002.csv", _generate(2, tmp_path))
    raw2 = await repos.finish_commit("raw", commit.id)
    train2 = await _job_for(stack, "train", raw2.global_id)
    assert train2.output_commit != train1.output_commit
    changed = await repos.diff("train", "master")
    assert "/model.onnx" in {c.path for c in changed.changes}
