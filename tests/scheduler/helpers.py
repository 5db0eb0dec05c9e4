"""Helpers for the scheduler tests: a pipeline whose command is a tiny Python program, input
commits, job events, and waiting for what the scheduler emits."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Mapping
from contextlib import aclosing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tusk.client import RepoClient
from tusk.events.bus import Subscription, decode
from tusk.events.envelope import Envelope, EventData
from tusk.events.types import InputCommit, JobCreatedV1

# The pipeline's command. It reads its datum (a file of the `in` input), and writes the upper-
# cased content to /pfs/out/<name>.out. Content drives it: FAIL exits 3, COLLIDE writes a path
# every such datum shares, SLEEP=<s> sleeps first, WAITFOR=<path> waits for that file to
# exist first, SLEEPONCE=<s> sleeps on the datum's first run only. Each run appends a line to
# $MARKERS/<name> (executions are counted there) and $MARKERS/<name>.pid holds its pid.
PROGRAM = r"""
import os, pathlib, sys, time
src = pathlib.Path(os.environ["PFS_IN"])
out = pathlib.Path(os.environ["TUSK_PFS_ROOT"]) / "out"
markers = os.environ.get("MARKERS")
if markers:
    with open(os.path.join(markers, src.name), "a") as f:
        f.write(os.environ["TUSK_DATUM"] + "\n")
    # Renamed into place, so that a reader never finds it empty.
    pid_file = pathlib.Path(markers, src.name + ".pid")
    pid_file.with_suffix(".tmp").write_text(str(os.getpid()))
    pid_file.with_suffix(".tmp").rename(pid_file)
data = src.read_text()
print("processing", src.name, "for", os.environ["TUSK_JOB"])
for word in data.split():
    if word.startswith("SLEEP="):
        time.sleep(float(word[6:]))
    if word.startswith("SLEEPONCE=") and markers:  # only on the datum's first run
        if len(open(os.path.join(markers, src.name)).read().splitlines()) == 1:
            time.sleep(float(word[10:]))
    if word.startswith("WAITFOR="):
        while not os.path.exists(word[8:]):
            time.sleep(0.02)
if "FAIL" in data:
    print("refusing input", src.name, "because it says FAIL", file=sys.stderr)
    sys.exit(3)
name = "collide.txt" if "COLLIDE" in data else src.name + ".out"
(out / name).write_text(data.upper())
"""


def pipeline_spec(
    name: str,
    input_repo: str,
    *,
    parallelism: int = 2,
    markers: Path | None = None,
    datum_tries: int = 1,
    **extra: Any,
) -> dict[str, Any]:
    env = {"MARKERS": str(markers)} if markers is not None else {}
    return {
        "pipeline": {"name": name},
        "input": {"pfs": {"name": "in", "repo": input_repo, "glob": "/*"}},
        "transform": {"cmd": [sys.executable, "-c", PROGRAM], "env": env},
        "parallelism_spec": {"constant": parallelism},
        "datum_tries": datum_tries,
        **extra,
    }


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def commit_files(
    repos: RepoClient, repo: str, files: Mapping[str, bytes | None], branch: str = "master"
) -> str:
    """One finished commit: put each file (None deletes it); the commit's id."""
    commit = await repos.start_commit(repo, branch)
    for path, data in files.items():
        if data is None:
            await repos.delete_file(repo, commit.id, path)
        else:
            await repos.put_file(repo, commit.id, path, data)
    await repos.finish_commit(repo, commit.id)
    return commit.id


def job_created(
    spec: dict[str, Any],
    input_repo: str,
    commit: str,
    global_id: str,
    *,
    version: int = 1,
    job: str | None = None,
) -> JobCreatedV1:
    """A job.created with its spec inline (v1): these tests run without a trigger.
    (tests/scheduler/test_job_spec_by_id.py reads specs from a trigger, as v2 names them.)"""
    name = spec["pipeline"]["name"]
    return JobCreatedV1(
        job=job or uuid.uuid4().hex,
        pipeline=name,
        version=version,
        spec=spec,
        inputs=(InputCommit(name="in", repo=input_repo, branch="master", commit=commit),),
        global_id=global_id,
        output_repo=name,
        output_branch="master",
        created_at=datetime.now(UTC),
    )


def envelope(data: EventData) -> Envelope:
    return Envelope.wrap(data, source="tests")


class EventLog:
    """Every event on tusk.jobs, read by a lone reader."""

    def __init__(self, subscription: Subscription) -> None:
        self.subscription = subscription
        self.events: list[tuple[str, dict[str, Any]]] = []

    async def poll(self) -> None:
        for record in await self.subscription.fetch(max_records=500, max_wait=0.05):
            env = decode(record)
            self.events.append((env.type, env.data))

    def of(self, job: str, kind: str | None = None) -> list[dict[str, Any]]:
        return [
            d
            for t, d in self.events
            if d.get("job") == job and (kind is None or t == f"io.tusk.job.{kind}.v1")
        ]

    async def wait_for(self, job: str, kind: str, within: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while not self.of(job, kind):
            if time.monotonic() > deadline:
                seen = [t for t, d in self.events if d.get("job") == job]
                raise AssertionError(f"no {kind} event for job {job} in {within}s; saw {seen}")
            await self.poll()
        return self.of(job, kind)[0]


async def read_file(repos: RepoClient, repo: str, ref: str, path: str) -> bytes:
    async with aclosing(repos.get_file(repo, ref, path)) as pieces:
        return b"".join([p async for p in pieces])


async def output_files(repos: RepoClient, repo: str, ref: str) -> dict[str, bytes]:
    return {f.path: await read_file(repos, repo, ref, f.path) async for f in repos.walk(repo, ref)}


def executions(markers: Path) -> dict[str, int]:
    """How many times the command ran, per input file name."""
    return {
        p.name: len(p.read_text().splitlines())
        for p in markers.iterdir()
        if not p.name.endswith((".pid", ".tmp"))
    }


async def wait_until(condition: Any, within: float = 300.0, what: str = "condition") -> None:
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.1)


def processes_of_job(job: str) -> list[int]:
    """The live processes whose environment says they run for ``job`` (its commands)."""
    found = []
    marker = f"TUSK_JOB={job}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone, or not ours to read
            continue
        if marker in environ.split(b"\0") and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"
