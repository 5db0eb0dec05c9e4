"""tusk's versioned data beside DVC's, the same data through each one's own client, one run.

    .venv/bin/python -m loadtest.bench_peers_data [--quick] [--json OUT]

Installs DVC (with its S3 remote) into its own virtualenv first if needed
(``loadtest.peers.install``). Starts PostgreSQL and versitygw as the tests do
(``tests.backing``), then three systems side by side:

- tusk embedded: ``tusk up`` (SQLite + a local directory) in a process of its own;
- tusk on the services stack: the repo service (``uvicorn``) on PostgreSQL + versitygw;
- DVC 3 in a git repository, its remote an S3 bucket on the same versitygw.

Each workload runs on each system in turn through the path a user takes: tusk's CLI (``tusk put
-r``, ``tusk commit finish``, ``tusk ls``, ``tusk diff``, ``tusk branch create``, ``tusk get``)
against DVC's (``dvc add`` + ``dvc push`` + ``git commit``, ``dvc commit``, ``dvc ls``,
``dvc diff``, ``git branch``, ``dvc pull``), and for the 500 small reads the SDKs (tusk's
``RepoClient.get_file`` against DVC's ``DVCFileSystem``, from a fresh clone whose cache starts
empty, so each read comes from the remote). Wall time; the client's CPU (its whole process
tree, from the kernel's accounting of reaped children) where it says something.

lakeFS cannot be installed here; its figures from ``../shared/PEERS.md`` (lakectl against
lakeFS v1.84 embedded, on this machine kind, a quiet machine) stand in the table as fixed targets.
Merge is left out: DVC merges through git, with nothing of its own to time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import psutil

from loadtest.bench_repo import PeakRss, running_stack
from loadtest.peers import install
from loadtest.report import environment, say
from tests.backing.common import free_port
from tusk.client import RepoClient

MiB = 1 << 20
TUSK = Path(sys.executable).with_name("tusk")
PEERS_DIR = Path(__file__).resolve().parent / "peers"
SYSTEMS = ("tusk embedded", "tusk services", "dvc")

# lakeFS v1.84 embedded through lakectl, quiet machine (../shared/PEERS.md): fixed targets.
LAKEFS = {
    "ingest": 1536.0,  # files/s, 10,000 x 4 KiB
    "commit_10000": 0.103,  # s
    "commit_100000": 0.95,  # s
    "list": 256.0,  # ms, 10,000 entries
    "diff": 41.2,  # ms
    "branch": 18.9,  # ms
    "read_p50": 7.4,  # ms
    "read_p99": 12.8,  # ms
    "put_big": 76.5,  # MiB/s, 1 GiB
    "put_big_rss": 690.0,  # MB
}


@dataclass(frozen=True)
class Sizes:
    files: int  # small files ingested in one commit, all in one directory (listed after)
    staged: int  # files staged before the timed commit
    changed: int  # files that differ between the two diffed commits
    reads: int
    big: int  # bytes of the big file
    branches: int

    @classmethod
    def full(cls) -> Sizes:
        return cls(files=10_000, staged=100_000, changed=100, reads=500, big=1 << 30, branches=5)

    @classmethod
    def quick(cls) -> Sizes:
        return cls(files=1_000, staged=10_000, changed=100, reads=100, big=64 * MiB, branches=3)


@dataclass
class Row:
    workload: str
    unit: str
    lower_is_better: bool
    values: dict[str, float | None] = field(default_factory=dict)
    lakefs: float | None = None
    notes: dict[str, str] = field(default_factory=dict)

    def ratio(self, system: str, peer: float | None) -> float | None:
        """tusk / peer, oriented so that > 1 means tusk is ahead."""
        value = self.values.get(system)
        if value is None or peer is None or value == 0 or peer == 0:
            return None
        return peer / value if self.lower_is_better else value / peer


# --- running commands --------------------------------------------------------------------------


@dataclass
class Ran:
    seconds: float
    cpu: float
    stdout: str
    server_cpu: float | None = None


def run(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> Ran:
    """Run a command to its end: wall time, and the CPU of it and everything it started."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv[:6])} exited {done.returncode}:\n{done.stderr[-3000:]}"
        )
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Ran(seconds, cpu, done.stdout)


def write_files(root: Path, names: list[str], size: int, salt: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        # Every file different, so nothing deduplicates on either side.
        head = f"{salt}:{name}:".encode()
        path.write_bytes(head + os.urandom(size - len(head)))


def write_big(path: Path, size: int) -> None:
    piece = 64 * MiB
    with path.open("wb") as out:
        left = size
        while left:
            out.write(os.urandom(min(piece, left)))
            left -= min(piece, left)


# --- tusk ---------------------------------------------------------------------------------------


class Tusk:
    def __init__(self, name: str, url: str, server_pid: int) -> None:
        self.name = name
        self.url = url
        self.server_pid = server_pid
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
        self.env.update({"TUSK_REPO_URL": url, "NO_COLOR": "1", "COLUMNS": "200"})

    def cli(self, *args: str) -> Ran:
        """The command's result; ``server_cpu`` is what the server spent meanwhile."""
        server = psutil.Process(self.server_pid)
        before = sum(server.cpu_times()[:2])
        ran = run([str(TUSK), *args], self.env)
        ran.server_cpu = sum(server.cpu_times()[:2]) - before
        return ran

    def ingest(self, repo: str, source: Path) -> Ran:
        self.cli("repo", "create", repo)
        return self.cli("put", f"{repo}@master:/", "-r", "-f", str(source))

    async def commit_staged(self, repo: str, source: Path, names: list[str]) -> Ran:
        """Stage ``names`` through the SDK's batch upload (not timed), then finish the commit
        through the CLI."""
        self.cli("repo", "create", repo)
        async with RepoClient(self.url) as client:
            info = await client.start_commit(repo, "master")
            for start in range(0, len(names), 10_000):
                batch = names[start : start + 10_000]
                await client.put_files(repo, info.id, [(n, source / n) for n in batch])
        return self.cli("commit", "finish", f"{repo}@{info.id}")

    def change(self, repo: str, source: Path) -> Ran:
        return self.cli("put", f"{repo}@master:/", "-r", "-f", str(source))

    def list_dir(self, repo: str, path: str) -> Ran:
        return self.cli("ls", f"{repo}@master:{path}")

    def diff(self, repo: str) -> Ran:
        return self.cli("diff", f"{repo}@master")

    def branch(self, repo: str, name: str) -> Ran:
        return self.cli("branch", "create", f"{repo}@{name}", "--head", "master")

    async def sdk(self, what: str, repo: str, n: int) -> list[float]:
        """The same operation through the SDK, ``n`` times, in ms: what the CLI adds is the
        difference."""
        out = []
        async with RepoClient(self.url) as client:
            for i in range(n):
                started = time.perf_counter()
                if what == "list":
                    async for _ in client.list_dir(repo, "master", "/"):
                        pass
                elif what == "diff":
                    await client.diff(repo, "master")
                else:
                    await client.create_branch(repo, f"sdk{i}", head="master")
                out.append((time.perf_counter() - started) * 1000)
        return out

    async def reads(self, repo: str, paths: list[str]) -> list[float]:
        latencies = []
        async with RepoClient(self.url) as client:
            for path in paths:
                started = time.perf_counter()
                async for _ in client.get_file(repo, "master", path):
                    pass
                latencies.append((time.perf_counter() - started) * 1000)
        return latencies

    def put_big(self, repo: str, source: Path) -> tuple[Ran, float]:
        self.cli("repo", "create", repo)
        with PeakRss(self.server_pid) as peak:
            ran = self.cli("put", f"{repo}@master:/big.bin", "-f", str(source))
        return ran, peak.peak / 1e6

    def get_big(self, repo: str, target: Path) -> Ran:
        return self.cli("get", f"{repo}@master:/big.bin", "-o", str(target))


@asynccontextmanager
async def tusk_up(work: Path) -> AsyncIterator[Tusk]:
    ports = {n: free_port() for n in ("REPO", "TRIGGER", "SCHEDULER", "INFERENCE", "CONSOLE")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
    env.update({f"TUSK_{n}_PORT": str(p) for n, p in ports.items()})
    env.update({"TUSK_S3_GATEWAY_PORT": "0", "TUSK_LOG_LEVEL": "WARNING"})
    log_path = work / "tusk-up.log"
    with log_path.open("wb") as log:
        child = subprocess.Popen(
            [str(TUSK), "up", "--data-dir", str(work / "embedded")],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{ports['REPO']}"
    try:
        deadline = time.monotonic() + 300  # a bound that only ends a hang
        while True:
            if child.poll() is not None:
                raise RuntimeError(f"tusk up exited:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("tusk up did not become ready")
            await asyncio.sleep(0.2)
        yield Tusk("tusk embedded", url, child.pid)
    finally:
        child.terminate()
        try:
            child.wait(60)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


# --- DVC ----------------------------------------------------------------------------------------


class Dvc:
    name = "dvc"

    def __init__(self, work: Path, endpoint: str, key: str, secret: str, bucket: str) -> None:
        self.work = work
        self.endpoint, self.key, self.secret, self.bucket = endpoint, key, secret, bucket
        bin_dir = install.venv_dir("dvc") / "bin"
        self.env = {
            **os.environ,
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "DVC_NO_ANALYTICS": "1",
            "GIT_AUTHOR_NAME": "bench",
            "GIT_AUTHOR_EMAIL": "bench@localhost",
            "GIT_COMMITTER_NAME": "bench",
            "GIT_COMMITTER_EMAIL": "bench@localhost",
        }
        self.dvc = str(bin_dir / "dvc")

    def repo(self, name: str) -> Path:
        """A fresh git + DVC repository with the S3 remote as its default."""
        path = self.work / "dvc" / name
        path.mkdir(parents=True)
        run(["git", "init", "-q", "-b", "master"], self.env, path)
        run([self.dvc, "init", "-q"], self.env, path)
        run([self.dvc, "remote", "add", "-d", "store", f"s3://{self.bucket}/{name}"],
            self.env, path)
        run([self.dvc, "remote", "modify", "store", "endpointurl", self.endpoint], self.env, path)
        self._credentials(path)
        run(["git", "add", "-A"], self.env, path)
        run(["git", "commit", "-q", "-m", "init"], self.env, path)
        return path

    def _credentials(self, path: Path) -> None:
        for option, value in (("access_key_id", self.key), ("secret_access_key", self.secret)):
            run([self.dvc, "remote", "modify", "--local", "store", option, value], self.env, path)

    def save(self, repo: Path, target: str, message: str) -> Ran:
        """What a DVC user does to version data: add, push to the remote, commit to git."""
        ran = [
            run([self.dvc, "add", "-q", target], self.env, repo),
            run([self.dvc, "push", "-q"], self.env, repo),
            run(["git", "add", "-A"], self.env, repo),
            run(["git", "commit", "-q", "-m", message], self.env, repo),
        ]
        return Ran(sum(r.seconds for r in ran), sum(r.cpu for r in ran), "")

    def ingest(self, repo: Path, source: Path) -> Ran:
        shutil.copytree(source, repo / "files")  # untimed: the workspace is DVC's input
        return self.save(repo, "files", "ingest")

    def commit_staged(self, repo: Path, source: Path) -> Ran:
        """``dvc add --no-commit`` (hashes, writes the .dvc file; not timed), then the timed
        ``dvc commit``, which moves the files into the cache."""
        shutil.copytree(source, repo / "staged")
        run([self.dvc, "add", "-q", "--no-commit", "staged"], self.env, repo)
        return run([self.dvc, "commit", "-q", "-f", "staged.dvc"], self.env, repo)

    def change(self, repo: Path, source: Path) -> Ran:
        shutil.copytree(source, repo, dirs_exist_ok=True)
        return self.save(repo, "files", "change")

    def list_dir(self, repo: Path, path: str) -> Ran:
        return run([self.dvc, "ls", ".", path.lstrip("/")], self.env, repo)

    def diff(self, repo: Path) -> Ran:
        return run([self.dvc, "diff", "HEAD~1", "HEAD"], self.env, repo)

    def branch(self, repo: Path, name: str) -> Ran:
        return run(["git", "branch", name], self.env, repo)

    def clone(self, repo: Path, name: str) -> Path:
        target = self.work / "dvc" / name
        run(["git", "clone", "-q", str(repo), str(target)], self.env)
        self._credentials(target)
        return target

    def reads(self, repo: Path, paths: list[str]) -> list[float]:
        clone = self.clone(repo, f"{repo.name}-readers")
        listing = self.work / "dvc-paths.txt"
        listing.write_text("\n".join(p.lstrip("/") for p in paths))
        ran = run(
            [str(install.python("dvc")), str(PEERS_DIR / "dvc_read.py"), "--repo", str(clone),
             "--paths", str(listing)],
            self.env,
        )
        latencies: list[float] = json.loads(ran.stdout)["latencies_ms"]
        return latencies

    def put_big(self, repo: Path, source: Path) -> Ran:
        shutil.copyfile(source, repo / "big.bin")
        return self.save(repo, "big.bin", "big")

    def get_big(self, repo: Path) -> tuple[Ran, Path]:
        clone = self.clone(repo, f"{repo.name}-pull")
        return run([self.dvc, "pull", "-q", "big.bin"], self.env, clone), clone / "big.bin"


# --- the run ------------------------------------------------------------------------------------


def record(row: Row, system: str, runs: list[Ran], raw: dict[str, Any]) -> None:
    """The median wall time of ``runs`` in ms, and the CPU behind it in the row's notes."""
    walls = [r.seconds * 1000 for r in runs]
    row.values[system] = statistics.median(walls)
    cpu = statistics.median(r.cpu for r in runs)
    servers = [r.server_cpu for r in runs if r.server_cpu is not None]
    note = f"client CPU {cpu * 1000:.0f} ms"
    if servers:
        note += f", server CPU {statistics.median(servers) * 1000:.0f} ms"
    row.notes[system] = f"{row.notes[system]}; {note}" if system in row.notes else note
    raw[f"{row.workload} | {system}"] = walls
    say(f"  {system}: {statistics.median(walls):.0f} ms ({note})")


async def sdk_row(rows: dict[str, Row], cli: Row, system: Tusk, repo: str, n: int) -> None:
    what = next(k for k, v in rows.items() if v is cli)
    sdk = rows.setdefault(f"{what}_sdk", Row("  the same through tusk's SDK", "ms", True))
    samples = await system.sdk(what, repo, n)
    sdk.values[system.name] = statistics.median(samples)
    say(f"  {system.name} SDK: {statistics.median(samples):.1f} ms")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


WORKLOADS = ("ingest", "commit", "list", "diff", "branch", "read", "big")


async def measure(
    sizes: Sizes, work: Path, chosen: frozenset[str] = frozenset(WORKLOADS)
) -> dict[str, Any]:
    """``chosen``: the workloads to run; listing, diff, branches and reads need the ingested
    repo, so any of them runs the ingest too."""
    needs_data = bool(chosen & {"ingest", "list", "diff", "branch", "read"})
    install.ensure("dvc")
    env = environment(dvc=install.version("dvc", "dvc"), dvc_s3=install.version("dvc", "dvc-s3"))
    say("writing the data ...")
    names = [f"f{i:06d}.bin" for i in range(sizes.files)]
    source = work / "src-files"
    write_files(source, names, 4096, "v1")
    changed = work / "src-changed"
    changed_names = random.Random(1).sample(names, sizes.changed)
    write_files(changed / "files", changed_names, 4096, "v2")
    staged_names = [f"d{i // 1000:03d}/f{i:06d}.bin" for i in range(sizes.staged)]
    staged = work / "src-staged"
    if "commit" in chosen:
        write_files(staged, staged_names, 64, "s")
    big = work / "big.bin"
    if "big" in chosen:
        write_big(big, sizes.big)
    reads = random.Random(2).choices(names, k=sizes.reads)
    rows: dict[str, Row] = {}
    raw: dict[str, Any] = {}

    def row(key: str, title: str, unit: str, lower: bool, lakefs: float | None = None) -> Row:
        return rows.setdefault(key, Row(title, unit, lower, lakefs=lakefs))

    async with running_stack(work) as stack:
        bucket = f"dvc-{uuid.uuid4().hex[:8]}"
        stack.s3.create_bucket(bucket)
        dvc = Dvc(work, stack.s3.endpoint_url, stack.s3.access_key, stack.s3.secret_key, bucket)
        env["versitygw_postgres"] = "started by tests.backing"
        async with tusk_up(work) as embedded:
            services = Tusk("tusk services", stack.base_url, stack.service.pid)
            tusks = [embedded, services]
            dvc_repo = dvc.repo("data")

            if needs_data:
                say(f"1. {sizes.files:,} x 4 KiB into one commit ...")
                r = row("ingest", f"{sizes.files:,} x 4 KiB into one commit, end to end", "files/s",
                        False, LAKEFS["ingest"] if sizes.files == 10_000 else None)
                cpu = row("ingest_cpu", "  client CPU per file", "ms", True)
                for system in [*tusks, dvc]:
                    ran = (system.ingest(dvc_repo, source) if isinstance(system, Dvc)
                           else system.ingest("data", source))
                    r.values[system.name] = sizes.files / ran.seconds
                    cpu.values[system.name] = ran.cpu * 1000 / sizes.files
                    if ran.server_cpu is not None:
                        r.notes[system.name] = f"server CPU {ran.server_cpu:.1f} s"
                    say(f"  {system.name}: {sizes.files / ran.seconds:,.0f} files/s, "
                        f"client CPU {ran.cpu:.1f} s")

            if "commit" in chosen:
                say(f"2. commit of {sizes.staged:,} staged files ...")
                r = row("commit", f"commit of {sizes.staged:,} staged files", "s", True,
                        LAKEFS.get(f"commit_{sizes.staged}"))
                for system in [*tusks, dvc]:
                    if isinstance(system, Dvc):
                        ran = system.commit_staged(system.repo("staged"), staged)
                    else:
                        ran = await system.commit_staged("staged", staged, staged_names)
                    r.values[system.name] = ran.seconds
                    if ran.server_cpu is not None:
                        r.notes[system.name] = (
                            f"client CPU {ran.cpu:.2f} s, server CPU {ran.server_cpu:.2f} s"
                        )
                    say(f"  {system.name}: {ran.seconds:.2f} s (client CPU {ran.cpu:.2f} s, "
                        f"server CPU {ran.server_cpu})")

            if "list" in chosen:
                say(f"3. list the {sizes.files:,}-entry directory ...")
                r = row("list", f"list a {sizes.files:,}-entry directory", "ms", True,
                        LAKEFS["list"] if sizes.files == 10_000 else None)
                for system in [*tusks, dvc]:
                    runs = [
                        system.list_dir(dvc_repo, "/files") if isinstance(system, Dvc)
                        else system.list_dir("data", "/")
                        for _ in range(3)
                    ]
                    record(r, system.name, runs, raw)
                    if isinstance(system, Tusk):
                        await sdk_row(rows, r, system, "data", 3 if r is not rows.get("branch")
                                      else sizes.branches)

            if "diff" in chosen:
                say(f"4. diff of two commits that differ in {sizes.changed} files ...")
                r = row("diff", f"diff, {sizes.changed} files differ", "ms", True, LAKEFS["diff"])
                for system in [*tusks, dvc]:
                    if isinstance(system, Dvc):
                        system.change(dvc_repo, changed)
                    else:
                        system.change("data", changed / "files")
                    runs = [
                        system.diff(dvc_repo) if isinstance(system, Dvc) else system.diff("data")
                        for _ in range(3)
                    ]
                    record(r, system.name, runs, raw)
                    if isinstance(system, Tusk):
                        await sdk_row(rows, r, system, "data", 3 if r is not rows.get("branch")
                                      else sizes.branches)

            if "branch" in chosen:
                say("5. create a branch ...")
                r = row("branch", "create a branch", "ms", True, LAKEFS["branch"])
                r.notes["dvc"] = "git branch: DVC's branches are git's"
                for system in [*tusks, dvc]:
                    runs = [
                        system.branch(dvc_repo, f"b{i}") if isinstance(system, Dvc)
                        else system.branch("data", f"b{i}")
                        for i in range(sizes.branches)
                    ]
                    record(r, system.name, runs, raw)
                    if isinstance(system, Tusk):
                        await sdk_row(rows, r, system, "data", 3 if r is not rows.get("branch")
                                      else sizes.branches)

            if "read" in chosen:
                say(f"6. read a 4 KiB file, {sizes.reads} times ...")
                p50 = row("read_p50", f"read 4 KiB (SDK), p50 of {sizes.reads}", "ms", True,
                          LAKEFS["read_p50"])
                p99 = row("read_p99", f"read 4 KiB (SDK), p99 of {sizes.reads}", "ms", True,
                          LAKEFS["read_p99"])
                for system in [*tusks, dvc]:
                    if isinstance(system, Dvc):
                        samples = system.reads(dvc_repo, [f"/files/{n}" for n in reads])
                    else:
                        samples = await system.reads("data", [f"/{n}" for n in reads])
                    p50.values[system.name] = pct(samples, 50)
                    p99.values[system.name] = pct(samples, 99)
                    say(f"  {system.name}: p50 {pct(samples, 50):.1f} ms, "
                        f"p99 {pct(samples, 99):.1f}")

            if "big" in chosen:
                size_mib = sizes.big / MiB
                say(f"7. put and get a {size_mib:,.0f} MiB file ...")
                put = row("put_big", f"put {size_mib:,.0f} MiB, upload + commit", "MiB/s", False,
                          LAKEFS["put_big"] if sizes.big == 1 << 30 else None)
                rss = row("put_big_rss", "  server peak RSS during it", "MB", True,
                          LAKEFS["put_big_rss"] if sizes.big == 1 << 30 else None)
                rss.notes["dvc"] = "no server (S3 directly)"
                get = row("get_big", f"get {size_mib:,.0f} MiB", "MiB/s", False)
                for system in [*tusks, dvc]:
                    if isinstance(system, Dvc):
                        big_repo = system.repo("big")
                        ran = system.put_big(big_repo, big)
                        rss.values[system.name] = None
                        got, target = system.get_big(big_repo)
                    else:
                        ran, peak = system.put_big("big", big)
                        rss.values[system.name] = peak
                        target = work / f"got-{system.name.replace(' ', '-')}.bin"
                        got = system.get_big("big", target)
                    if target.stat().st_size != sizes.big:
                        raise RuntimeError(f"{system.name} gave back {target.stat().st_size} bytes")
                    target.unlink()
                    put.values[system.name] = size_mib / ran.seconds
                    get.values[system.name] = size_mib / got.seconds
                    say(f"  {system.name}: put {size_mib / ran.seconds:.0f} MiB/s, "
                        f"get {size_mib / got.seconds:.0f} MiB/s")
    env["load_average_after"] = os.getloadavg()
    return {"environment": env, "rows": list(rows.values()), "raw": raw, "sizes": asdict(sizes)}


def print_rows(rows: list[Row], env: dict[str, Any]) -> None:
    header = ["workload", *SYSTEMS, "lakeFS (PEERS.md)", "emb/DVC", "svc/DVC", "emb/lakeFS",
              "svc/lakeFS"]
    table = [header]
    for r in rows:
        cells = [f"{r.workload} ({r.unit})"]
        for name in SYSTEMS:
            value = r.values.get(name)
            cells.append("-" if value is None else f"{value:,.{1 if value < 100 else 0}f}")
        cells.append("" if r.lakefs is None else f"{r.lakefs:,.1f}")
        for system, peer in (
            ("tusk embedded", r.values.get("dvc")),
            ("tusk services", r.values.get("dvc")),
            ("tusk embedded", r.lakefs),
            ("tusk services", r.lakefs),
        ):
            ratio = r.ratio(system, peer)
            cells.append("" if ratio is None else f"{ratio:.2f}")
        table.append(cells)
    widths = [max(len(t[i]) for t in table) for i in range(len(header))]
    print("tusk vs DVC (same run) and lakeFS (fixed figures); ratios > 1: tusk ahead")
    for i, cells in enumerate(table):
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    for r in rows:
        for name, note in r.notes.items():
            print(f"* {r.workload.strip()}, {name}: {note}")
    print(
        f"\nmachine: {env['nproc']} cores ({env['cpu']}), {env['memory_gib']} GiB, load "
        f"{env['load_average_before'][0]:.2f} before / {env['load_average_after'][0]:.2f} after; "
        f"Python {env['python']}; DVC {env['dvc']} (dvc-s3 {env['dvc_s3']})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Full size: 10,000 files, a 100,000-file commit, 500 reads, 1 GiB.",
    )
    parser.add_argument(
        "--quick", action="store_true",
        help="1,000 files, a 10,000-file commit, 100 reads, 64 MiB",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=Path(tempfile.gettempdir()) / "tusk-peers-data.json",
        help="where to write the figures (default: %(default)s)",
    )
    parser.add_argument("--files", type=int, help="small files ingested (and listed)")
    parser.add_argument("--staged", type=int, help="files in the timed commit")
    parser.add_argument("--reads", type=int, help="small reads")
    parser.add_argument("--big-mib", type=int, help="size of the big file in MiB")
    parser.add_argument(
        "--only", choices=WORKLOADS, action="append",
        help="run only this workload (repeatable); list, diff, branch and read also ingest",
    )
    args = parser.parse_args(argv)
    sizes = Sizes.quick() if args.quick else Sizes.full()
    sizes = replace(
        sizes,
        files=args.files or sizes.files,
        staged=args.staged or sizes.staged,
        reads=args.reads or sizes.reads,
        big=args.big_mib * MiB if args.big_mib else sizes.big,
    )
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tusk-peers-data-") as work:
        out = asyncio.run(
            measure(sizes, Path(work), frozenset(args.only) if args.only else frozenset(WORKLOADS))
        )
    out["total_seconds"] = round(time.monotonic() - started, 1)
    print()
    print_rows(out["rows"], out["environment"])
    out["rows"] = [
        asdict(r) | {
            "tusk_embedded_over_dvc": r.ratio("tusk embedded", r.values.get("dvc")),
            "tusk_services_over_dvc": r.ratio("tusk services", r.values.get("dvc")),
            "tusk_embedded_over_lakefs": r.ratio("tusk embedded", r.lakefs),
            "tusk_services_over_lakefs": r.ratio("tusk services", r.lakefs),
        }
        for r in out["rows"]
    ]
    args.json.write_text(json.dumps(out, indent=2, default=str))
    say(f"done in {out['total_seconds']:.0f} s; figures in {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
