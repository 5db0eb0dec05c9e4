"""The repo service's speed and memory targets (issue 2), each against a baseline of the same run.

    .venv/bin/python -m loadtest.bench_repo [--quick] [--json OUT] [--only big,small,...]

Starts PostgreSQL and versitygw (``tests.backing``), runs the repo service as its own uvicorn
process (so that its RSS is its own), and measures:

1. ``big``: a 1 GiB streamed put vs a raw aiobotocore multipart upload of the same amount of
   data (and, for reference, raw PutObject of its 8 MiB parts), and the service's peak RSS;
2. ``small``: 10,000 files of 4 KiB in one commit through the batch endpoint (start + put +
   finish) vs raw S3 PUTs of the same 10,000 objects;
3. ``finish``: finishing a commit that adds 100,000 files vs reading its staged rows with raw
   asyncpg;
4. ``huge``: starting a child commit of a 1,000,000-file commit, and listing a 10,000-entry
   directory in it, vs the service's ``GET /healthz`` and a raw asyncpg ``SELECT 1``.

The 1,000,000-file commit is staged in-process through the service's own staging code
(``tusk_repo.store.stage_puts``, on the same database) instead of through a million files sent
over HTTP: its file rows name chunks that were never uploaded, which neither starting a commit
nor listing a directory reads. It is then finished through the HTTP API like any other commit.
The exit status is 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import random
import statistics
import struct
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python loadtest/bench_repo.py`: make the root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg  # type: ignore[import-untyped]
import httpx
import psutil  # type: ignore[import-untyped]
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from tests.backing.common import free_port, wait_until
from tests.backing.postgres import PostgresServer
from tests.backing.s3 import S3Server
from tusk.objectstore.chunks import ChunkedFile, hash_bytes
from tusk_repo.config import RepoSettings

MiB = 1 << 20
GiB = 1 << 30
PIECE = 1 * MiB  # what the client sends per write
CHUNK = 8 * MiB  # the service's default chunk size (TUSK_REPO_CHUNK_SIZE); also the raw part size
RAW_PARTS_IN_FLIGHT = 8  # the raw uploads' concurrency
BATCH_CONCURRENCY = 32  # raw small PUTs in flight (what the batch endpoint used before packing)
STAGE_BATCH = 10_000  # files per batch request when staging big commits
INPROCESS_STAGE_BATCH = 50_000  # staged rows per transaction for the 1M-file commit


@dataclass(frozen=True)
class Sizes:
    big_file: int
    small_files: int
    finish_files: int
    huge_files: int
    huge_dirs: int
    rounds: int  # the 1 GiB put and its baseline: best of this many

    @classmethod
    def full(cls) -> Sizes:
        return cls(GiB, 10_000, 100_000, 1_000_000, 100, 2)

    @classmethod
    def quick(cls) -> Sizes:
        return cls(64 * MiB, 1_000, 10_000, 100_000, 10, 1)


@dataclass
class Baseline:
    name: str
    value: float  # in the unit of the figure it is a baseline for
    ratio: float  # the figure divided by this


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    target: str
    met: bool
    baselines: list[Baseline]
    notes: str = ""

    @classmethod
    def of(
        cls,
        name: str,
        value: float,
        unit: str,
        target: str,
        met: bool,
        baselines: dict[str, float],
        notes: str = "",
    ) -> Figure:
        return cls(
            name,
            value,
            unit,
            target,
            met,
            [Baseline(b, v, value / v) for b, v in baselines.items()],
            notes,
        )


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, figure: Figure) -> None:
        self.figures.append(figure)
        mark = "ok" if figure.met else "MISSED"
        say(f"  {figure.name}: {_fmt(figure.value, figure.unit)} (target {figure.target}) {mark}")


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _fmt(value: float, unit: str) -> str:
    if unit in ("ms", "s"):
        return f"{value:.{1 if value >= 10 else 2 if value >= 0.1 else 3}f} {unit}"
    return f"{value:,.0f} {unit}"


# --- data ------------------------------------------------------------------------------------


def pieces(total: int, seed: int) -> Iterator[bytes]:
    """``total`` bytes of incompressible data, 1 MiB at a time, no two pieces alike (so no
    chunk of one run dedups against another), generated as sent rather than held."""
    base = random.Random(seed).randbytes(PIECE)
    sent = 0
    index = 0
    while sent < total:
        n = min(PIECE, total - sent)
        yield (struct.pack(">QQ", seed, index) + base[16:])[:n]
        sent += n
        index += 1


async def apieces(total: int, seed: int) -> AsyncIterator[bytes]:
    for piece in pieces(total, seed):
        yield piece


def small_file(seed: int, index: int, size: int) -> bytes:
    head = struct.pack(">QQ", seed, index)
    return (head * (size // len(head) + 1))[:size]


def tar_of(files: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


# --- measuring -------------------------------------------------------------------------------


class PeakRss:
    """Samples a process's RSS every few milliseconds in a thread; ``peak`` is the highest."""

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


async def timed(action: Awaitable[Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = await action
    return time.perf_counter() - started, result


async def latencies(action: Callable[[], Awaitable[Any]], n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        await action()
        out.append((time.perf_counter() - started) * 1000)
    return out


def median(values: list[float]) -> float:
    return statistics.median(values)


def check(response: httpx.Response, status: int = 200) -> Any:
    if response.status_code != status:
        raise RuntimeError(
            f"{response.request.method} {response.request.url} answered "
            f"{response.status_code}: {response.text[:500]}"
        )
    return response.json() if response.content else None


# --- the stack -------------------------------------------------------------------------------


@dataclass
class Stack:
    postgres: PostgresServer
    s3: S3Server
    bucket: str
    service: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    @property
    def pg_dsn(self) -> str:
        return self.postgres.url.replace("postgresql+asyncpg://", "postgresql://", 1)

    @asynccontextmanager
    async def s3_client(self) -> AsyncIterator[Any]:
        # The same client configuration as tusk.objectstore.s3.S3ObjectStore.connect.
        config = AioConfig(
            max_pool_connections=64,
            retries={"max_attempts": 5, "mode": "standard"},
            s3={"addressing_style": "path"},
        )
        async with get_session().create_client(
            "s3",
            endpoint_url=self.s3.endpoint_url,
            region_name=self.s3.region,
            aws_access_key_id=self.s3.access_key,
            aws_secret_access_key=self.s3.secret_key,
            config=config,
        ) as client:
            yield client


@asynccontextmanager
async def running_stack(work: Path, python: str = sys.executable) -> AsyncIterator[Stack]:
    postgres, s3 = PostgresServer(), S3Server()
    say("starting PostgreSQL and versitygw ...")
    postgres.start()
    service: subprocess.Popen[bytes] | None = None
    try:
        s3.start()
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        s3.create_bucket(bucket)
        port = free_port()
        env = {
            **os.environ,
            "TUSK_DATABASE_URL": postgres.url,
            "TUSK_OBJECT_STORE_URL": f"s3://{bucket}/objects",
            "TUSK_S3_ENDPOINT_URL": s3.endpoint_url,
            "TUSK_S3_ACCESS_KEY_ID": s3.access_key,
            "TUSK_S3_SECRET_ACCESS_KEY": s3.secret_key,
            "TUSK_S3_REGION": s3.region,
            "TUSK_REPO_PORT": str(port),
            "TUSK_DATA_DIR": str(work / "data"),
        }
        log_path = work / "repo-service.log"
        say(f"starting the repo service on port {port} (log: {log_path}) ...")
        with log_path.open("ab") as log:
            service = subprocess.Popen(
                [
                    python,
                    "-m",
                    "uvicorn",
                    "--factory",
                    "tusk_repo.app:create_app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--no-access-log",
                ],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        base_url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            if service is not None and service.poll() is not None:
                raise RuntimeError(f"the repo service exited; see {log_path}")
            try:
                return httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, 60, "the repo service to be ready")
        yield Stack(postgres, s3, bucket, service, base_url, log_path)
    finally:
        if service is not None and service.poll() is None:
            service.terminate()
            try:
                service.wait(20)
            except subprocess.TimeoutExpired:
                service.kill()
        s3.stop()
        postgres.stop()


# --- 1. a 1 GiB streamed put -------------------------------------------------------------------


async def raw_multipart(stack: Stack, key: str, total: int, seed: int) -> float:
    """Seconds for a multipart upload with the service's chunk size and concurrency."""
    async with stack.s3_client() as s3:
        started = time.perf_counter()
        upload = await s3.create_multipart_upload(Bucket=stack.bucket, Key=key)
        parts: list[dict[str, Any]] = []

        async def send(number: int, data: bytes) -> None:
            answer = await s3.upload_part(
                Bucket=stack.bucket,
                Key=key,
                UploadId=upload["UploadId"],
                PartNumber=number,
                Body=data,
            )
            parts.append({"PartNumber": number, "ETag": answer["ETag"]})

        await in_parts(total, seed, send)
        await s3.complete_multipart_upload(
            Bucket=stack.bucket,
            Key=key,
            UploadId=upload["UploadId"],
            MultipartUpload={"Parts": sorted(parts, key=lambda p: p["PartNumber"])},
        )
        return time.perf_counter() - started


async def raw_objects(stack: Stack, prefix: str, total: int, seed: int) -> float:
    """Seconds for PutObject of each part as an object of its own: the S3 work of the service's
    chunk store, without the service."""
    async with stack.s3_client() as s3:
        started = time.perf_counter()

        async def send(number: int, data: bytes) -> None:
            await s3.put_object(Bucket=stack.bucket, Key=f"{prefix}/{number}", Body=data)

        await in_parts(total, seed, send)
        return time.perf_counter() - started


async def in_parts(total: int, seed: int, send: Callable[[int, bytes], Awaitable[None]]) -> None:
    """``send`` the data in parts of CHUNK bytes, numbered from 1, RAW_PARTS_IN_FLIGHT at once."""
    slots = asyncio.Semaphore(RAW_PARTS_IN_FLIGHT)

    async def send_one(number: int, data: bytes) -> None:
        try:
            await send(number, data)
        finally:
            slots.release()

    async with asyncio.TaskGroup() as group:
        buffer = bytearray()
        number = 0

        async def submit() -> None:
            nonlocal number
            await slots.acquire()
            number += 1
            group.create_task(send_one(number, bytes(buffer)))
            buffer.clear()

        for piece in pieces(total, seed):
            buffer += piece
            if len(buffer) >= CHUNK:
                await submit()
        if buffer:
            await submit()


async def bench_big_file(
    stack: Stack, http: httpx.AsyncClient, sizes: Sizes, report: Report
) -> None:
    total = sizes.big_file
    say(f"1. put a {total // MiB} MiB file (best of {sizes.rounds}) ...")
    check(await http.post("/v1/repos", json={"name": "big"}), 201)
    service = RepoSettings()  # what the service process runs with: the same environment
    multipart_times, object_times, put_times, peaks = [], [], [], []
    idle_rss = psutil.Process(stack.service.pid).memory_info().rss
    for round_ in range(sizes.rounds):
        seed = 10 * round_  # new data every time: nothing deduplicates against earlier rounds
        multipart_times.append(await raw_multipart(stack, f"raw/big-{round_}", total, seed + 1))
        object_times.append(await raw_objects(stack, f"raw/parts-{round_}", total, seed + 2))
        commit = check(await http.post("/v1/repos/big/commits", json={"branch": "master"}), 201)
        with PeakRss(stack.service.pid) as rss:
            elapsed, response = await timed(
                http.put(
                    f"/v1/repos/big/commits/{commit['id']}/file",
                    params={"path": f"/big-{round_}.bin"},
                    content=apieces(total, seed + 3),
                    headers={
                        "Content-Length": str(total),
                        "Content-Type": "application/octet-stream",
                    },
                )
            )
        check(response, 201)
        check(await http.post(f"/v1/repos/big/commits/{commit['id']}/finish"))
        put_times.append(elapsed)
        peaks.append(rss.peak)
        say(
            f"   raw multipart {total / multipart_times[-1] / MiB:.0f} MiB/s, raw objects "
            f"{total / object_times[-1] / MiB:.0f} MiB/s, repo put {total / elapsed / MiB:.0f} "
            f"MiB/s with peak RSS {rss.peak / 1e6:.0f} MB ({rss.samples} samples)"
        )
    multipart = total / min(multipart_times) / MiB
    objects = total / min(object_times) / MiB
    repo = total / min(put_times) / MiB
    report.add(
        Figure.of(
            f"put a {total // MiB:,} MiB file",
            repo,
            "MiB/s",
            ">= 80% of raw multipart",
            repo / multipart >= 0.8,
            {
                "raw aiobotocore multipart upload": multipart,
                f"raw PutObject of its {CHUNK // MiB} MiB parts": objects,
            },
            f"best of {sizes.rounds} each, interleaved; raw uploads: parts of {CHUNK // MiB} MiB "
            f"(the service's chunk size), {RAW_PARTS_IN_FLIGHT} in flight (the service: "
            f"{service.upload_concurrency}); the multipart time includes CompleteMultipartUpload",
        )
    )
    peak = max(peaks) / 1e6
    report.add(
        Figure.of(
            "repo service peak RSS during the put",
            peak,
            "MB",
            "< 300 MB",
            peak < 300,
            {"repo service RSS when idle": idle_rss / 1e6},
            "psutil every 10 ms in a thread; MB = 10^6 bytes",
        )
    )
    report.details["big_file"] = {
        "bytes": total,
        "raw_multipart_seconds": multipart_times,
        "raw_objects_seconds": object_times,
        "put_seconds": put_times,
        "peak_rss_bytes": peaks,
        "idle_rss_bytes": idle_rss,
    }


# --- 2. 10,000 small files in one commit -----------------------------------------------------


async def raw_small_puts(stack: Stack, files: list[tuple[str, bytes]]) -> float:
    async with stack.s3_client() as s3:
        slots = asyncio.Semaphore(BATCH_CONCURRENCY)

        async def put(key: str, data: bytes) -> None:
            async with slots:
                await s3.put_object(Bucket=stack.bucket, Key=key, Body=data)

        started = time.perf_counter()
        await asyncio.gather(*(put(f"raw/small/{name}", data) for name, data in files))
        return time.perf_counter() - started


async def bench_small_files(
    stack: Stack, http: httpx.AsyncClient, sizes: Sizes, report: Report
) -> None:
    n = sizes.small_files
    say(f"2. put {n:,} files of 4 KiB in one commit ...")
    files = [(f"d{i // 1000:02}/f{i:05}.bin", small_file(3, i, 4096)) for i in range(n)]
    raw_seconds = await raw_small_puts(stack, files)
    body = tar_of(files)  # built before the clock starts, like files already on disk
    check(await http.post("/v1/repos", json={"name": "small"}), 201)

    async def commit() -> dict[str, Any]:
        started = check(await http.post("/v1/repos/small/commits", json={"branch": "master"}), 201)
        check(
            await http.post(
                f"/v1/repos/small/commits/{started['id']}/files",
                params={"prefix": "/"},
                content=body,
                headers={"Content-Type": "application/x-tar"},
            ),
            201,
        )
        finished: dict[str, Any] = check(
            await http.post(f"/v1/repos/small/commits/{started['id']}/finish")
        )
        return finished

    seconds, finished = await timed(commit())
    if finished["file_count"] != n:
        raise RuntimeError(f"the commit holds {finished['file_count']} files, not {n}")
    rate, raw_rate = n / seconds, n / raw_seconds
    report.add(
        Figure.of(
            f"put {n:,} files of 4 KiB in one commit",
            rate,
            "files/s",
            ">= 1,000 files/s",
            rate >= 1000,
            {f"raw S3 PUTs of the same objects, {BATCH_CONCURRENCY} in flight": raw_rate},
            "start + one batch request (a tar of all files) + finish; the tar is built beforehand",
        )
    )
    report.details["small_files"] = {
        "files": n,
        "seconds": seconds,
        "raw_seconds": raw_seconds,
        "tar_bytes": len(body),
    }


# --- 3. finishing a commit of 100,000 files --------------------------------------------------


async def stage_via_batches(
    http: httpx.AsyncClient, repo: str, commit_id: str, n: int, dirs: int, seed: int
) -> None:
    per_dir = n // dirs
    names = [f"d{i // per_dir:03}/f{i:07}" for i in range(n)]
    for start in range(0, n, STAGE_BATCH):
        batch = [
            (name, small_file(seed, start + j, 64))
            for j, name in enumerate(names[start : start + STAGE_BATCH])
        ]
        check(
            await http.post(
                f"/v1/repos/{repo}/commits/{commit_id}/files",
                params={"prefix": "/"},
                content=tar_of(batch),
                headers={"Content-Type": "application/x-tar"},
            ),
            201,
        )


async def bench_finish(stack: Stack, http: httpx.AsyncClient, sizes: Sizes, report: Report) -> None:
    n = sizes.finish_files
    say(f"3. finish a commit that adds {n:,} files (staging them first) ...")
    check(await http.post("/v1/repos", json={"name": "wide"}), 201)
    commit = check(await http.post("/v1/repos/wide/commits", json={"branch": "master"}), 201)
    started = time.perf_counter()
    await stage_via_batches(http, "wide", commit["id"], n, 100, seed=4)
    stage_seconds = time.perf_counter() - started
    say(
        f"   staged through the batch endpoint in {stage_seconds:.1f} s "
        f"({n / stage_seconds:,.0f} files/s)"
    )
    conn = await asyncpg.connect(stack.pg_dsn)
    try:
        read_seconds, rows = await timed(
            conn.fetch(
                "SELECT path, op, file_hash, size FROM repo_staged WHERE commit_id = $1",
                commit["id"],
            )
        )
    finally:
        await conn.close()
    assert len(rows) == n, len(rows)
    seconds, finished = await timed(http.post(f"/v1/repos/wide/commits/{commit['id']}/finish"))
    info = check(finished)
    if info["file_count"] != n:
        raise RuntimeError(f"the commit holds {info['file_count']} files, not {n}")
    report.add(
        Figure.of(
            f"finish a commit adding {n:,} files",
            seconds,
            "s",
            "<= 2 s",
            seconds <= 2,
            {"raw asyncpg read of its staged rows": read_seconds},
            "the finish call alone; 100 directories; staged beforehand through the batch endpoint",
        )
    )
    report.details["finish"] = {
        "files": n,
        "seconds": seconds,
        "stage_seconds": stage_seconds,
        "read_staged_seconds": read_seconds,
    }


# --- 4. a 1,000,000-file commit: start a child, list a directory -----------------------------


async def stage_in_process(stack: Stack, commit_id: str, n: int, dirs: int) -> None:
    """Stage ``n`` files through the service's own staging code, without uploading contents."""
    from tusk.db import Database
    from tusk_repo import store

    db = Database.from_url(stack.postgres.url)
    per_dir = n // dirs
    try:
        for start in range(0, n, INPROCESS_STAGE_BATCH):
            puts = []
            for i in range(start, min(n, start + INPROCESS_STAGE_BATCH)):
                content = small_file(5, i, 64)
                digest = hash_bytes(content)
                stored = ChunkedFile(digest, 64, ((digest, 64),))
                puts.append((f"/d{i // per_dir:03}/f{i:07}", stored))
            async with db.session() as session:
                await store.stage_puts(session, commit_id, puts)
    finally:
        await db.dispose()


async def bench_huge_commit(
    stack: Stack, http: httpx.AsyncClient, sizes: Sizes, report: Report
) -> None:
    n, dirs = sizes.huge_files, sizes.huge_dirs
    per_dir = n // dirs
    say(f"4. build a {n:,}-file commit ({dirs} directories of {per_dir:,} files) ...")
    check(await http.post("/v1/repos", json={"name": "huge"}), 201)
    commit = check(await http.post("/v1/repos/huge/commits", json={"branch": "master"}), 201)
    stage_seconds, _ = await timed(stage_in_process(stack, commit["id"], n, dirs))
    say(f"   staged in-process in {stage_seconds:.1f} s")
    finish_seconds, response = await timed(
        http.post(f"/v1/repos/huge/commits/{commit['id']}/finish")
    )
    info = check(response)
    if info["file_count"] != n:
        raise RuntimeError(f"the commit holds {info['file_count']} files, not {n}")
    say(f"   finished through the API in {finish_seconds:.1f} s")

    # Baselines: the service's cheapest route and the database's cheapest query.
    health = await latencies(lambda: http.get("/healthz"), 50)
    conn = await asyncpg.connect(stack.pg_dsn)
    try:
        select1 = await latencies(lambda: conn.fetchval("SELECT 1"), 50)
    finally:
        await conn.close()

    starts: list[float] = []
    for _ in range(20):
        started = time.perf_counter()
        child = check(await http.post("/v1/repos/huge/commits", json={"branch": "master"}), 201)
        starts.append((time.perf_counter() - started) * 1000)
        assert child["parent"] == info["id"], child
        check(await http.delete(f"/v1/repos/huge/commits/{child['id']}"), 204)

    # Each directory listed once from cold (its node not yet in the service's cache), then again.
    cold: list[float] = []
    warm: list[float] = []
    for d in range(min(dirs, 20)):
        for out in (cold, warm):
            started = time.perf_counter()
            response = await http.get(
                f"/v1/repos/huge/commits/{info['id']}/list", params={"path": f"/d{d:03}"}
            )
            out.append((time.perf_counter() - started) * 1000)  # the whole body received
            page = check(response)  # decoding the JSON is the client's time, not the service's
            assert len(page["items"]) == per_dir
            assert page["next_cursor"] is None

    baselines = {"GET /healthz": median(health), "raw asyncpg SELECT 1": median(select1)}
    start_ms = median(starts)
    report.add(
        Figure.of(
            f"start a child of a {n:,}-file commit",
            start_ms,
            "ms",
            "<= 50 ms",
            start_ms <= 50,
            baselines,
            f"median of {len(starts)} starts (each abandoned); max {max(starts):.1f} ms",
        )
    )
    list_ms = median(cold)
    report.add(
        Figure.of(
            f"list a {per_dir:,}-entry directory in it",
            list_ms,
            "ms",
            "<= 100 ms",
            list_ms <= 100,
            baselines,
            f"median over {len(cold)} directories, each listed for the first time (its node read "
            f"from SQL), until the whole body is received; max {max(cold):.1f} ms; "
            f"listed again (node cached): median {median(warm):.1f} ms",
        )
    )
    report.details["huge_commit"] = {
        "files": n,
        "dirs": dirs,
        "stage_in_process_seconds": stage_seconds,
        "finish_seconds": finish_seconds,
        "start_ms": starts,
        "list_cold_ms": cold,
        "list_warm_ms": warm,
        "healthz_ms": health,
        "select1_ms": select1,
    }


# --- the run ---------------------------------------------------------------------------------


def environment(stack: Stack) -> dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    from tests.backing import postgres as pg_backing
    from tests.backing import s3 as s3_backing

    pg_version = subprocess.run(
        [pg_backing.ensure_installed() / "postgres", "--version"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()

    return {
        "load_average_before": os.getloadavg(),
        "nproc": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / GiB, 1),
        "cpu": cpu,
        "python": platform.python_version(),
        "postgresql": pg_version,
        "versitygw": s3_backing.VERSION,
    }


def print_table(report: Report) -> None:
    rows = [("figure", "value", "target", "met", "baseline", "baseline value", "ratio")]
    for f in report.figures:
        for i, b in enumerate(f.baselines):
            head = (
                (f.name, _fmt(f.value, f.unit), f.target, "yes" if f.met else "NO")
                if i == 0
                else ("", "", "", "")
            )
            rows.append((*head, b.name, _fmt(b.value, f.unit), f"{b.ratio:.2f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print()
    for f in report.figures:
        if f.notes:
            print(f"* {f.name}: {f.notes}")


BENCHES = {
    "big": bench_big_file,
    "small": bench_small_files,
    "finish": bench_finish,
    "huge": bench_huge_commit,
}


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
        "--quick",
        action="store_true",
        help="small sizes for a sanity run (64 MiB; 1,000 / 10,000 / 100,000 files)",
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the results here")
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
    sizes = Sizes.quick() if args.quick else Sizes.full()
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
