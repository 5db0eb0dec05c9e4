"""Setting up a job the way the scheduler will, and running `tusk-worker` against it."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from tusk.client import RepoClient
from tusk.errors import NotFound
from tusk.worker.protocol import (
    META_BRANCH,
    DatumInputSpec,
    DatumResult,
    DatumSpec,
    ShardSpec,
    TransformSpec,
    log_path,
    parse_results_batch,
    results_dir,
    shard_path,
)

WORKER = Path(sys.executable).with_name("tusk-worker")
PY = sys.executable


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any TUSK_* setting of the person running the tests."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
    env.update(extra)
    return env


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def input_repo(repo: RepoClient, files: dict[str, bytes]) -> tuple[str, str]:
    """A repo with one finished commit holding ``files``: (repo, commit id)."""
    name = unique("in")
    await repo.create_repo(name)
    commit = await repo.start_commit(name)
    for path, data in files.items():
        await repo.put_file(name, commit.id, path, data)
    await repo.finish_commit(name, commit.id)
    return name, commit.id


@dataclass
class Job:
    """A job as the scheduler opens it: output and meta commits on the pipeline's repo."""

    repo: RepoClient
    url: str
    output_repo: str
    output_commit: str
    meta_commit: str
    job: str

    @classmethod
    async def open(cls, repo: RepoClient, url: str) -> Job:
        name = unique("pipe")
        await repo.create_repo(name)
        output = await repo.start_commit(name, "master")
        meta = await repo.start_commit(name, META_BRANCH)
        return cls(repo, url, name, output.id, meta.id, uuid.uuid4().hex)

    async def write_shard(
        self,
        datums: Sequence[DatumSpec],
        cmd: Sequence[str],
        *,
        shard: int = 0,
        stdin: Sequence[str] = (),
        env: dict[str, str] | None = None,
        datum_tries: int = 1,
        datum_timeout_seconds: float | None = None,
        log_tail_bytes: int = 16 * 1024,
        **transform: Any,
    ) -> ShardSpec:
        spec = ShardSpec(
            job=self.job,
            pipeline=self.output_repo,
            shard=shard,
            output_repo=self.output_repo,
            output_commit=self.output_commit,
            meta_commit=self.meta_commit,
            transform=TransformSpec(
                cmd=tuple(cmd), stdin=tuple(stdin), env=env or {}, **transform
            ),
            datum_tries=datum_tries,
            datum_timeout_seconds=datum_timeout_seconds,
            log_tail_bytes=log_tail_bytes,
            datums=tuple(datums),
        )
        await self.repo.put_file(
            self.output_repo,
            self.meta_commit,
            shard_path(self.job, shard),
            spec.model_dump_json().encode(),
        )
        return spec

    def worker_args(self, shard: int = 0) -> list[str]:
        return [
            str(WORKER),
            "--output-repo",
            self.output_repo,
            "--meta-commit",
            self.meta_commit,
            "--job",
            self.job,
            "--shard",
            str(shard),
        ]

    def worker_env(self, tmp: Path, **extra: str) -> dict[str, str]:
        scratch = tmp / "scratch"
        scratch.mkdir(exist_ok=True)
        settings = {
            "TUSK_REPO_URL": self.url,
            "TUSK_WORKER_SCRATCH": str(scratch),
            "TUSK_WORKER_KILL_GRACE": "1",
            # These tests look at the staging directory itself; test_sandbox.py runs in bwrap.
            "TUSK_WORKER_SANDBOX": "off",
        }
        return clean_env(**{**settings, **extra})

    async def run_worker(
        self, tmp: Path, shard: int = 0, timeout: float = 120, **env: str
    ) -> tuple[int, str]:
        """Run `tusk-worker` to its end: (exit status, stderr)."""
        process = await asyncio.create_subprocess_exec(
            *self.worker_args(shard),
            env=self.worker_env(tmp, **env),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await asyncio.wait_for(process.communicate(), timeout)
        assert process.returncode is not None
        return process.returncode, stderr.decode(errors="replace")

    async def read(self, path: str, ref: str | None = None) -> bytes:
        pieces = [
            p async for p in self.repo.get_file(self.output_repo, ref or self.meta_commit, path)
        ]
        return b"".join(pieces)

    async def batches(self) -> dict[str, bytes]:
        """The results batch files in the meta commit, by path."""
        try:
            paths = [
                e.path
                async for e in self.repo.list_dir(
                    self.output_repo, self.meta_commit, results_dir(self.job)
                )
            ]
        except NotFound:
            return {}
        return {path: await self.read(path) for path in paths}

    async def results(self) -> dict[str, DatumResult]:
        """Every datum result in the meta commit, by datum (a success wins over a failure)."""
        found: dict[str, DatumResult] = {}
        for data in (await self.batches()).values():
            results, problems = parse_results_batch(data)
            assert not problems, problems
            for r in results:
                if r.datum not in found or found[r.datum].state != "success":
                    found[r.datum] = r
        return found

    async def result(self, datum: str) -> DatumResult:
        results = await self.results()
        assert datum in results, f"no result for {datum!r} in the meta commit"
        return results[datum]

    async def log(self, datum: str) -> str:
        return (await self.read(log_path(self.job, datum))).decode(errors="replace")

    async def output(self, path: str) -> bytes:
        return await self.read(path, self.output_commit)


def file_input(name: str, repo: str, commit: str, path: str) -> DatumInputSpec:
    return DatumInputSpec(name=name, repo=repo, commit=commit, path=path, type="file")


def dir_input(name: str, repo: str, commit: str, path: str) -> DatumInputSpec:
    return DatumInputSpec(name=name, repo=repo, commit=commit, path=path, type="dir")


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie (nobody may reap orphans here)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def result_line(
    job: str, datum: str, state: Literal["success", "failed"], *, log_tail: str = ""
) -> bytes:
    """One line of a results batch file, as a worker writes it."""
    now = datetime.now(UTC)
    result = DatumResult(
        datum=datum,
        job=job,
        shard=0,
        state=state,
        attempts=1,
        started_at=now,
        finished_at=now,
        log_tail=log_tail,
    )
    return result.model_dump_json().encode() + b"\n"
