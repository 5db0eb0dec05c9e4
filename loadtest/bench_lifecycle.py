"""The repo service's data-lifecycle targets (issue 16), each against a baseline of the same run.

    .venv/bin/python -m loadtest.bench_lifecycle [--quick] [--json OUT] [--only gc,merge,get]
    .venv/bin/python -m loadtest.bench_lifecycle --only merge --repeat 5   # five merges, one run

Starts PostgreSQL and versitygw and the repo service as its own process, as
``loadtest.bench_repo`` does, and measures:

1. ``gc``: garbage collection over a repo of 100,000 files in 1,000 commits, after a scratch
   repo was deleted and half of the commits squashed away, while an upload runs throughout;
   then checks that every commit the upload made, and the remaining commits, read back whole.
   Baseline: reading every tree node and file row with raw asyncpg plus listing the bucket
   with raw aiobotocore (the I/O any mark and sweep needs).
2. ``merge``: a three-way merge of two branches that each changed 10,000 of 1,000,000 files,
   vs the diff of one branch against the base (the same trees, read the same way).
3. ``get``: ``tusk get -r`` of 10,000 files of 4 KiB vs ``tusk put -r`` of the same files,
   both through the CLI as a user runs them.

The 1,000,000-file commit is staged in-process, as in ``bench_repo``; everything else goes
through the HTTP API. The exit status is 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg  # type: ignore[import-untyped]
import httpx

from loadtest.bench_repo import (
    Figure,
    Report,
    Stack,
    check,
    environment,
    print_table,
    running_stack,
    say,
    small_file,
    tar_of,
    timed,
)
from tusk.objectstore.chunks import ChunkedFile, hash_bytes


@dataclass(frozen=True)
class Sizes:
    gc_files: int
    gc_commits: int
    merge_files: int
    merge_changes: int
    get_files: int
    merge_repeat: int = 1  # merges, each of a new branch with the same paths changed anew

    @classmethod
    def full(cls) -> Sizes:
        return cls(100_000, 1_000, 1_000_000, 10_000, 10_000)

    @classmethod
    def quick(cls) -> Sizes:
        return cls(10_000, 100, 100_000, 1_000, 2_000)


async def put_batch(http: httpx.AsyncClient, repo: str, files: list[tuple[str, bytes]]) -> str:
    commit = check(await http.post(f"/v1/repos/{repo}/commits", json={}), 201)
    for start in range(0, len(files), 10_000):
        check(
            await http.post(
                f"/v1/repos/{repo}/commits/{commit['id']}/files",
                content=tar_of(files[start : start + 10_000]),
                headers={"Content-Type": "application/x-tar"},
            ),
            201,
        )
    check(await http.post(f"/v1/repos/{repo}/commits/{commit['id']}/finish"))
    return str(commit["id"])


async def read_tree(http: httpx.AsyncClient, repo: str, ref: str) -> dict[str, bytes]:
    import io
    import tarfile

    response = await http.get(f"/v1/repos/{repo}/commits/{ref}/tar", params={"path": "/"})
    if response.status_code != 200:
        raise RuntimeError(f"reading {repo}@{ref} answered {response.status_code}: {response.text}")
    with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:") as archive:
        return {
            "/" + m.name: archive.extractfile(m).read()  # type: ignore[union-attr]
            for m in archive
        }


# --- 1. garbage collection ---------------------------------------------------------------------


async def uploader(
    http: httpx.AsyncClient, stop: asyncio.Event, made: list[tuple[str, dict[str, bytes]]]
) -> None:
    """Commits of 50 new small files, one after another, until told to stop."""
    check(await http.post("/v1/repos", json={"name": "busy"}), 201)
    round_ = 0
    while not stop.is_set():
        files = [(f"r{round_:05}/f{i:02}", os.urandom(512)) for i in range(50)]
        commit = await put_batch(http, "busy", files)
        made.append((commit, {"/" + p: d for p, d in files}))
        round_ += 1


async def bench_gc(stack: Stack, http: httpx.AsyncClient, sizes: Sizes, report: Report) -> None:
    n, commits = sizes.gc_files, sizes.gc_commits
    say(f"1. garbage collection over {n:,} files in {commits:,} commits ...")
    # Garbage written first, so that it is older than the grace period when collected.
    check(await http.post("/v1/repos", json={"name": "scratch"}), 201)
    await put_batch(
        http, "scratch", [(f"s/{i:06}", small_file(11, i, 1024)) for i in range(n // 5)]
    )
    check(await http.post("/v1/repos", json={"name": "big"}), 201)
    started = time.perf_counter()
    await put_batch(
        http, "big", [(f"d{i % 100:02}/f{i:07}", small_file(12, i, 256)) for i in range(n)]
    )
    ids = []
    per_commit = max(1, n // commits // 10)
    rng = random.Random(13)
    for c in range(commits - 1):
        changed = [
            (f"d{(j := rng.randrange(n)) % 100:02}/f{j:07}", small_file(100 + c, j, 256))
            for _ in range(per_commit)
        ]
        ids.append(await put_batch(http, "big", changed))
    say(f"   built in {time.perf_counter() - started:.0f} s")
    check(await http.delete("/v1/repos/scratch"), 204)
    half = len(ids) // 2
    check(await http.post("/v1/repos/big/squash", json={"oldest": ids[0], "newest": ids[half]}))
    expected_head = await read_tree(http, "big", "master")

    conn = await asyncpg.connect(stack.pg_dsn)
    try:

        async def read_rows() -> None:
            await conn.fetch("SELECT hash, entries FROM repo_trees")
            await conn.fetch("SELECT hash, chunks FROM repo_files")

        rows_seconds, _ = await timed(read_rows())
    finally:
        await conn.close()

    async def list_bucket() -> int:
        count = 0
        async with stack.s3_client() as s3:
            paginator = s3.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=stack.bucket, Prefix="objects/chunks/"):
                count += len(page.get("Contents", []))
        return count

    list_seconds, objects_before = await timed(list_bucket())

    stop = asyncio.Event()
    made: list[tuple[str, dict[str, bytes]]] = []
    upload = asyncio.create_task(uploader(http, stop, made))
    while len(made) < 3:  # the upload is under way before collection starts
        await asyncio.sleep(0.05)
    # Grace: longer than any one upload request takes, shorter than the garbage's age.
    seconds, response = await timed(http.post("/v1/gc", params={"grace_seconds": 10}))
    gc = check(response)
    before_stop = len(made)
    while len(made) < before_stop + 3:  # and it goes on after
        await asyncio.sleep(0.05)
    stop.set()
    await upload
    say(
        f"   collected: {gc['chunks']:,} chunks ({gc['bytes']:,} bytes), "
        f"{gc['files']:,} file rows, {gc['tree_nodes']:,} tree nodes in {seconds:.2f} s; "
        f"{len(made)} upload commits"
    )
    for commit, files in made:
        got = await read_tree(http, "busy", commit)
        assert {p: d for p, d in got.items() if p in files} == files, (
            f"upload commit {commit} lost data"
        )
    assert await read_tree(http, "big", "master") == expected_head, "the head lost data"
    for commit in rng.sample(ids[half + 1 :], min(20, len(ids) - half - 1)):
        await read_tree(http, "big", commit)
    if gc["chunks"] == 0 or gc["files"] == 0:
        raise RuntimeError(f"nothing was collected: {gc}")
    report.add(
        Figure.of(
            f"gc of {n:,} files in {commits:,} commits (PostgreSQL + S3)",
            seconds,
            "s",
            "<= 10 s",
            seconds <= 10,
            {
                "raw asyncpg read of every tree and file row": rows_seconds,
                "raw ListObjectsV2 of the bucket's chunks": list_seconds,
            },
            f"POST /v1/gc while {len(made)} upload commits ran (all read back whole, as did "
            f"the head and 20 older commits); {objects_before:,} chunk objects before; freed "
            f"{gc['chunks']:,} chunks, {gc['files']:,} file rows, {gc['tree_nodes']:,} nodes",
        )
    )
    report.details["gc"] = {
        "report": gc,
        "upload_commits": len(made),
        "rows_seconds": rows_seconds,
        "list_seconds": list_seconds,
    }


# --- 2. merge --------------------------------------------------------------------------------


async def stage_changes(stack: Stack, commit_id: str, paths: list[str], seed: int) -> None:
    from tusk.db import Database
    from tusk_repo import store

    db = Database.from_url(stack.postgres.url)
    try:
        for start in range(0, len(paths), 50_000):
            puts = []
            for i, path in enumerate(paths[start : start + 50_000]):
                content = small_file(seed, start + i, 64)
                digest = hash_bytes(content)
                puts.append((path, ChunkedFile(digest, 64, ((digest, 64),))))
            async with db.session() as session:
                await store.stage_puts(session, commit_id, puts)
    finally:
        await db.dispose()


async def bench_merge(stack: Stack, http: httpx.AsyncClient, sizes: Sizes, report: Report) -> None:
    n, k = sizes.merge_files, sizes.merge_changes
    dirs = 100
    say(f"2. merge two branches that each changed {k:,} of {n:,} files ...")
    names = [f"/d{i % dirs:03}/f{i:07}" for i in range(n)]
    check(await http.post("/v1/repos", json={"name": "wide"}), 201)
    base = check(await http.post("/v1/repos/wide/commits", json={}), 201)
    await stage_changes(stack, base["id"], names, 1)
    check(await http.post(f"/v1/repos/wide/commits/{base['id']}/finish"))
    rng = random.Random(17)
    chosen = rng.sample(names, 2 * k)

    async def branch_off(branch: str, paths: list[str], seed: int) -> None:
        check(
            await http.post("/v1/repos/wide/branches", json={"name": branch, "head": "master"}), 201
        )
        commit = check(await http.post("/v1/repos/wide/commits", json={"branch": branch}), 201)
        await stage_changes(stack, commit["id"], paths, seed)
        check(await http.post(f"/v1/repos/wide/commits/{commit['id']}/finish"))

    await branch_off("a", chosen[:k], 2)
    runs = []
    for i in range(sizes.merge_repeat):
        # Each merge a new source branch (new contents at the same paths): new nodes to write.
        source, into = ("b", "m") if i == 0 else (f"b{i}", f"m{i}")
        await branch_off(source, chosen[k:], 3 + i)
        check(await http.post("/v1/repos/wide/branches", json={"name": into, "head": "a"}), 201)
        diff_seconds, diff = await timed(
            http.get(f"/v1/repos/wide/commits/{source}/diff", params={"from": "master"})
        )
        assert len(check(diff)["changes"]) == k
        load = os.getloadavg()[0]
        seconds, response = await timed(
            http.post("/v1/repos/wide/merge", json={"source": source, "into": into})
        )
        merged = check(response)
        if merged["outcome"] != "merged" or merged["changed_paths"] != k:
            raise RuntimeError(f"unexpected merge: {merged}")
        info = check(await http.get(f"/v1/repos/wide/commits/{into}"))
        assert info["file_count"] == n, info
        steps = merge_steps(stack.log_path)
        say(f"   merge {i + 1}: {seconds:.2f} s at load {load:.1f}; steps (the log): {steps}")
        nth = f" (merge {i + 1} of {sizes.merge_repeat})" if sizes.merge_repeat > 1 else ""
        report.add(
            Figure.of(
                f"merge two branches that each changed {k:,} of {n:,} files{nth}",
                seconds,
                "s",
                "<= 2 s",
                seconds <= 2,
                {"diff of one branch against the base": diff_seconds},
                f"POST /v1/repos/wide/merge, three-way (not a fast-forward); {dirs} directories",
            )
        )
        runs.append(
            {"seconds": seconds, "diff_seconds": diff_seconds, "steps": steps, "load": load}
        )
    report.details["merge"] = runs[0] if len(runs) == 1 else runs


def merge_steps(log_path: Path) -> dict[str, float]:
    """The step timings of the service's last ``merged`` log line (console or JSON)."""
    lines = [line for line in log_path.read_text(errors="replace").splitlines() if "merged" in line]
    if not lines:
        return {}
    found = re.findall(r'"?(\w+_(?:seconds|bytes)|nodes_written\w*)"?[=:]\s*([\d.]+)', lines[-1])
    return {key: float(value) for key, value in found}


# --- 3. get -r vs put -r -----------------------------------------------------------------------


def cli(stack: Stack, *args: str) -> float:
    env = {**os.environ, "TUSK_REPO_URL": stack.base_url, "NO_COLOR": "1"}
    started = time.perf_counter()
    subprocess.run(
        [str(Path(sys.executable).with_name("tusk")), *args],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return time.perf_counter() - started


async def bench_get(stack: Stack, http: httpx.AsyncClient, sizes: Sizes, report: Report) -> None:
    n = sizes.get_files
    say(f"3. get -r vs put -r of {n:,} files of 4 KiB ...")
    with tempfile.TemporaryDirectory(prefix="tusk-bench-get-") as work:
        source, target = Path(work) / "src", Path(work) / "out"
        for i in range(n):
            path = source / f"d{i % 10}" / f"f{i:06}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(os.urandom(4096))
        check(await http.post("/v1/repos", json={"name": "files"}), 201)
        put_seconds = await asyncio.to_thread(
            cli, stack, "put", "files@master:/tree", "-r", "-f", str(source)
        )
        get_seconds = await asyncio.to_thread(
            cli, stack, "get", "files@master:/tree", "-r", "-o", str(target)
        )
        for path in source.rglob("*"):
            if path.is_file():
                assert (target / path.relative_to(source)).read_bytes() == path.read_bytes(), path
    get_rate, put_rate = n / get_seconds, n / put_seconds
    report.add(
        Figure.of(
            f"tusk get -r of {n:,} files of 4 KiB",
            get_rate,
            "files/s",
            ">= put -r",
            get_rate >= put_rate,
            {"tusk put -r of the same files": put_rate},
            "each a CLI process as a user runs it (start-up included); every file compared",
        )
    )
    report.details["get"] = {"get_seconds": get_seconds, "put_seconds": put_seconds}


BENCHES = {"gc": bench_gc, "merge": bench_merge, "get": bench_get}


async def run(sizes: Sizes, work: Path, only: list[str]) -> Report:
    report = Report()
    async with running_stack(work) as stack:
        report.environment = environment(stack)
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=600) as http:
            for name, bench in BENCHES.items():
                if name in only:
                    await bench(stack, http, sizes, report)
    report.environment["load_average_after"] = os.getloadavg()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="a tenth of the sizes, for a sanity run"
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the results here")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="merges in one run (each of a new branch), for the spread under load",
    )
    parser.add_argument(
        "--only",
        default=",".join(BENCHES),
        metavar="NAMES",
        help=f"comma-separated subset of: {', '.join(BENCHES)}",
    )
    args = parser.parse_args(argv)
    only = args.only.split(",")
    if unknown := set(only) - BENCHES.keys():
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    sizes = replace(Sizes.quick() if args.quick else Sizes.full(), merge_repeat=args.repeat)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tusk-bench-") as work:
        report = asyncio.run(run(sizes, Path(work), only))
    report.details["total_seconds"] = time.monotonic() - started
    report.details["sizes"] = asdict(sizes)
    print()
    print_table(report)
    say(f"done in {report.details['total_seconds']:.0f} s")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "environment": report.environment,
                    "figures": [asdict(f) for f in report.figures],
                    "details": report.details,
                },
                indent=2,
            )
        )
    return 0 if all(f.met for f in report.figures) else 1


if __name__ == "__main__":
    sys.exit(main())
