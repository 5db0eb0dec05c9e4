"""``tusk-worker --standby``: the protocol the local runner uses to keep workers warm. (Whole
shards run through it in the scheduler tests, whose LocalRunner keeps warm workers.)"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import subprocess
import sys
from pathlib import Path

import httpx

from tests.scheduler.helpers import wait_until
from tests.worker.helpers import PY, Job
from tusk.client import RepoClient
from tusk.worker.protocol import DatumSpec, ShardSpec, TransformSpec

WORKER = [str(Path(sys.executable).parent / "tusk-worker")]


def standby(stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*WORKER, "--standby"], input=stdin, capture_output=True, timeout=300, check=False
    )


def test_a_standby_worker_let_go_exits_quietly() -> None:
    done = standby(b"")
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")


def test_a_malformed_assignment_is_a_worker_error() -> None:
    done = standby(b'{"argv": "not a list"}\n')
    assert done.returncode == 2
    assert b"not an assignment" in done.stderr


def test_an_assignment_sends_output_to_its_log_and_status_to_its_exit_file(
    tmp_path: Path,
) -> None:
    log, exit_file = tmp_path / "attempt-0.log", tmp_path / "attempt-0.exit"
    assignment = {
        "argv": ["--job", "j"],  # no --output-repo: a usage error, exit status 2
        "env": {"TUSK_REPO_URL": "http://127.0.0.1:9"},
        "log_file": str(log),
        "exit_file": str(exit_file),
    }
    done = standby(json.dumps(assignment).encode() + b"\n")
    assert done.returncode == 2
    assert exit_file.read_text().strip() == "2"
    assert "--output-repo" in log.read_text()  # argparse's usage message went to the log
    assert done.stderr == b""


async def test_a_standby_worker_runs_the_spec_it_is_handed(
    repo: RepoClient, repo_url: str, tmp_path: Path
) -> None:
    """Handed its spec and told the job is fresh, the worker reads neither from the meta
    commit: here the spec is not even there, and the shard still runs."""
    job = await Job.open(repo, repo_url)
    script = (
        "import os\n"
        "open(os.path.join(os.environ['TUSK_PFS_ROOT'], 'out', os.environ['TUSK_DATUM']), 'w')"
        ".write('ok')\n"
    )
    spec = ShardSpec(
        job=job.job,
        pipeline=job.output_repo,
        shard=0,
        output_repo=job.output_repo,
        output_commit=job.output_commit,
        meta_commit=job.meta_commit,
        transform=TransformSpec(cmd=(PY, "-c", script)),
        datums=(DatumSpec(id="d1", inputs=()),),
    )
    exit_file = tmp_path / "attempt-0.exit"
    assignment = {
        "argv": job.worker_args()[1:],
        "log_file": str(tmp_path / "attempt-0.log"),
        "exit_file": str(exit_file),
        "shard_spec": spec.model_dump_json(),
        "fresh": True,
    }
    process = await asyncio.create_subprocess_exec(
        *WORKER,
        "--standby",
        env=job.worker_env(tmp_path),
        stdin=asyncio.subprocess.PIPE,
    )
    await asyncio.wait_for(process.communicate(json.dumps(assignment).encode() + b"\n"), 120)
    assert process.returncode == 0, (tmp_path / "attempt-0.log").read_text()
    assert exit_file.read_text().strip() == "0"
    assert (await job.result("d1")).state == "success"
    assert await job.output("/d1") == b"ok"


async def test_a_listening_worker_takes_one_assignment_that_carries_its_key(
    repo: RepoClient, repo_url: str, tmp_path: Path
) -> None:
    """``--listen``, a warm pod's worker: warm, it answers on its address; an assignment
    without the pod's key is refused (403) and leaves it waiting; the right one runs, and the
    datum's command sees neither the key nor the token."""
    job = await Job.open(repo, repo_url)
    script = (
        "import os\n"
        "seen = [os.environ.get(k, '-') for k in ('TUSK_WORKER_ASSIGNMENT_KEY', 'TUSK_TOKEN')]\n"
        "open(os.path.join(os.environ['TUSK_PFS_ROOT'], 'out', os.environ['TUSK_DATUM']), 'w')"
        ".write(' '.join(seen))\n"
    )
    spec = ShardSpec(
        job=job.job,
        pipeline=job.output_repo,
        shard=0,
        output_repo=job.output_repo,
        output_commit=job.output_commit,
        meta_commit=job.meta_commit,
        transform=TransformSpec(cmd=(PY, "-c", script)),
        datums=(DatumSpec(id="d1", inputs=()),),
    )
    host = f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"
    port = random.randint(20000, 60000)
    key = secrets.token_urlsafe(16)
    env = job.worker_env(tmp_path) | {
        "TUSK_WORKER_LISTEN_HOST": host,
        "TUSK_WORKER_LISTEN_PORT": str(port),
        "TUSK_WORKER_ASSIGNMENT_KEY": key,
    }
    process = await asyncio.create_subprocess_exec(*WORKER, "--listen", env=env)
    base = f"http://{host}:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:

            async def listening() -> bool:
                assert process.returncode is None, "the worker exited while getting warm"
                try:
                    return (await http.get("/healthz")).status_code == 200
                except httpx.ConnectError:
                    return False

            await wait_until(listening, 120, "the worker to listen")
            assignment = {
                "argv": job.worker_args()[1:],
                "env": {"TUSK_TOKEN": "unused"},
                "shard_spec": spec.model_dump_json(),
                "fresh": True,
            }
            refused = [
                await http.post("/v1/assignment", json=assignment),
                await http.post(
                    "/v1/assignment", json=assignment, headers={"Authorization": "Bearer nope"}
                ),
            ]
            assert [r.status_code for r in refused] == [403, 403]
            right = {"Authorization": f"Bearer {key}"}
            bad = await http.post("/v1/assignment", json={"argv": "x"}, headers=right)
            assert bad.status_code == 400
            assert (await http.get("/healthz")).status_code == 200  # still waiting
            taken = await http.post("/v1/assignment", json=assignment, headers=right)
            assert taken.status_code == 202, taken.text
        assert await asyncio.wait_for(process.wait(), 120) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert (await job.result("d1")).state == "success"
    assert await job.output("/d1") == b"- -"
