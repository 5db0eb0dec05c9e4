"""A small world for the console's tests: a repo of assorted files in two commits, a pipeline
that copies it, and one whose datum fails with a log worth reading."""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass

from tusk.client.models import CommitInfo, JobInfo
from tusk.client.pipelines import TriggerClient
from tusk.client.repo import RepoClient

# A 1x1 PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
CSV_ROWS = 250
MANY_FILES = 120
FAILURE = "row 2 has no customer id"

COPY = """
import os, shutil
root = os.environ.get("TUSK_PFS_ROOT", "/pfs")
src = os.path.join(root, "raw")
for name in os.listdir(src):
    path = os.path.join(src, name)
    (shutil.copytree if os.path.isdir(path) else shutil.copy)(path, os.path.join(root, "out", name))
print("copied", sorted(os.listdir(src)))
"""

VALIDATE = f"""
import os, sys
root = os.environ.get("TUSK_PFS_ROOT", "/pfs")
for name in sorted(os.listdir(os.path.join(root, "uploads"))):
    if name.startswith("bad"):
        print(f"{{name}}: {FAILURE}", file=sys.stderr)
        sys.exit(3)
    print(f"{{name}}: ok")
"""


def pipeline_spec(name: str, repo: str, glob: str, script: str) -> str:
    return json.dumps({
        "pipeline": {"name": name},
        "input": {"pfs": {"repo": repo, "branch": "master", "glob": glob}},
        "transform": {"image": "python:3.11", "cmd": ["python3", "-c", script]},
        "datum_tries": 1,
    })


def csv_text(rows: int, tag: str) -> bytes:
    lines = ["id,name,amount"]
    lines += [f'{i},"Smith, {tag}{i}",{i * 10}' for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


@dataclass(frozen=True)
class World:
    first: CommitInfo
    second: CommitInfo
    copy_job: JobInfo
    failed_job: JobInfo


async def wait_for_job(
    trigger: TriggerClient, pipeline: str, global_id: str, timeout: float = 180
) -> JobInfo:
    """The pipeline's job for one change, once it has ended."""
    async with asyncio.timeout(timeout):
        while True:
            async for job in trigger.list_jobs(pipeline=pipeline):
                if job.global_id == global_id:
                    if job.ended:
                        return job
                    return await _wait_end(trigger, job.id)
            await asyncio.sleep(0.2)


async def _wait_end(trigger: TriggerClient, job_id: str) -> JobInfo:
    while True:
        job = await trigger.wait_job(job_id, seconds=30)
        if job.ended:
            return job


async def build_world(repos: RepoClient, trigger: TriggerClient) -> World:
    await repos.create_repo("raw", "assorted files for the console's previews")
    await repos.create_repo("uploads")
    await trigger.create_pipeline(pipeline_spec("copy", "raw", "/*", COPY))
    await trigger.create_pipeline(pipeline_spec("validate", "uploads", "/*", VALIDATE))
    files: list[tuple[str, bytes]] = [
        ("data.csv", csv_text(CSV_ROWS, "a")),
        ("notes.txt", b"hello from the console test\n"),
        ("meta.json", b'{"b": 1, "a": [1, 2]}'),
        ("pixel.png", PNG),
        ("page.html", b"<script>alert(1)</script>"),
        *((f"many/f{i:04d}.txt", f"{i}\n".encode()) for i in range(MANY_FILES)),
    ]
    commit = await repos.start_commit("raw")
    await repos.put_files("raw", commit.id, files)
    first = await repos.finish_commit("raw", commit.id)
    commit = await repos.start_commit("raw")
    await repos.put_file("raw", commit.id, "/data.csv", csv_text(CSV_ROWS + 1, "b"))
    await repos.put_file("raw", commit.id, "/more.txt", b"more\n")
    second = await repos.finish_commit("raw", commit.id)
    copy_job = await wait_for_job(trigger, "copy", second.global_id)

    commit = await repos.start_commit("uploads")
    await repos.put_file("uploads", commit.id, "/good.csv", b"id\n1\n")
    await repos.put_file("uploads", commit.id, "/bad.csv", b"id\n\n")
    uploads = await repos.finish_commit("uploads", commit.id)
    failed_job = await wait_for_job(trigger, "validate", uploads.global_id)
    return World(first, second, copy_job, failed_job)
