"""The worker's parts in-process: the datum log, running a command, scanning outputs, and
`run_shard` itself (with its batched results) against the real repo server."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import pytest

from tests.worker.helpers import PY, Job, alive, file_input, input_repo, result_line
from tusk.client import PutResult, RepoClient
from tusk.errors import InvalidArgument
from tusk.worker import runtime
from tusk.worker.process import DatumLog, run_command
from tusk.worker.protocol import DatumSpec, results_batch_path
from tusk.worker.runtime import load_shard_spec, run_shard
from tusk.worker.transfer import DatumError, RetryPolicy, read_scanned, scan_outputs

# --- the datum log ---------------------------------------------------------------------------


def test_log_keeps_everything_under_the_limit() -> None:
    log = DatumLog(limit=100)
    log.write(b"partial")
    log.line("=== header ===")
    log.write(b"out\n")
    assert log.getvalue() == b"partial\n=== header ===\nout\n"


def test_log_keeps_the_tail_and_says_it_was_truncated() -> None:
    log = DatumLog(limit=1000)
    for i in range(1000):
        log.write(f"{i:04d}\n".encode())
    value = log.getvalue()
    assert value.startswith(b"[tusk: log truncated, the first 4000 bytes were dropped]\n")
    assert value.endswith(b"0999\n")
    assert len(value.split(b"\n", 1)[1]) == 1000


# --- running a command -----------------------------------------------------------------------


async def run(cmd: list[str], **kwargs: object) -> tuple[str | None, bytes]:
    log = DatumLog()
    options: dict[str, object] = {
        "stdin_lines": (),
        "env": dict(os.environ),
        "time_limit": None,
        "kill_grace": 1.0,
    }
    options.update(kwargs)
    result = await run_command(cmd, log=log, **options)  # type: ignore[arg-type]
    return result.failure, log.getvalue()


async def test_command_gets_stdin_lines_and_env() -> None:
    script = "import os, sys; print(sys.stdin.read() + os.environ['X'], end='')"
    failure, output = await run([PY, "-c", script], stdin_lines=("a", "b"), env={"X": "y"})
    assert failure is None
    assert output == b"a\nb\ny"


async def test_command_that_ignores_stdin_is_fine() -> None:
    failure, _ = await run(["true"], stdin_lines=["x" * 100_000] * 20)
    assert failure is None


async def test_command_failures_say_why() -> None:
    assert (await run(["sh", "-c", "exit 4"]))[0] == "exit code 4"
    assert (await run(["sh", "-c", "kill -9 $$"]))[0] == "killed by signal SIGKILL"
    failure, _ = await run(["/no/such/program"])
    assert failure is not None
    assert failure.startswith("cannot start '/no/such/program'")


async def test_a_failure_quotes_the_end_of_stderr_only() -> None:
    script = (
        "import sys\n"
        "print('progress on stdout')\n"
        "for i in range(20): print(f'warning {i}', file=sys.stderr)\n"
        "print('fatal: the input has no header', file=sys.stderr)\n"
        "sys.exit(2)\n"
    )
    failure, output = await run([PY, "-c", script])
    assert failure == (
        "exit code 2; stderr ends:\n"
        "warning 16\nwarning 17\nwarning 18\nwarning 19\nfatal: the input has no header"
    )
    # Both streams are in the log.
    assert b"progress on stdout" in output
    assert b"warning 0" in output


async def test_timeout_stops_a_command_that_ignores_sigterm() -> None:
    script = "trap '' TERM; echo ready; sleep 30"
    started = time.monotonic()
    failure, output = await run(["sh", "-c", script], time_limit=0.5, kill_grace=0.5)
    assert failure == "timed out after 0.5 s"
    assert output == b"ready\n"
    assert time.monotonic() - started < 5


async def test_background_children_do_not_hold_the_datum() -> None:
    started = time.monotonic()
    failure, output = await run(["sh", "-c", "sleep 30 & echo done"])
    assert failure is None
    assert output == b"done\n"
    assert time.monotonic() - started < 5


async def test_cancelling_kills_the_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    task = asyncio.create_task(run(["sh", "-c", f"echo $$ > {pid_file}; sleep 30"]))
    while not pid_file.exists() or not pid_file.read_text().strip():
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not alive(int(pid_file.read_text()))


# --- outputs ---------------------------------------------------------------------------------


def test_scan_skips_what_is_not_a_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "a" / "b").mkdir(parents=True)
    (out / "a" / "b" / "f.txt").write_text("f")
    os.mkfifo(out / "fifo")

    files, notes = scan_outputs(out)

    assert sorted((f.remote, f.size) for f in files) == [("/a/b/f.txt", 1)]
    assert any("fifo" in n and "not a regular file" in n for n in notes)


@pytest.mark.parametrize(
    ("name", "target", "why"),
    [
        ("passwd", "/etc/passwd", "outside the datum's directory"),  # a host file
        ("hostdir", "/etc", "outside the datum's directory"),  # a host directory
        ("up", "../../outside.txt", "outside the datum's directory"),
        ("dangling", "../in/missing", "cannot be read"),
        ("a/b/loop", "..", "links to directories are not followed"),
        ("indir", "../in", "links to directories are not followed"),
    ],
)
def test_scan_refuses_a_link_out_of_the_datum(
    tmp_path: Path, name: str, target: str, why: str
) -> None:
    out = tmp_path / "pfs" / "out"
    (out / "a" / "b").mkdir(parents=True)
    (tmp_path / "pfs" / "in").mkdir()
    (tmp_path / "outside.txt").write_text("host")
    (out / name).symlink_to(target)
    with pytest.raises(DatumError, match=f"output {name} is a symbolic link to {target}, .*{why}"):
        scan_outputs(out)


def test_scan_follows_a_link_to_an_input_of_the_datum(tmp_path: Path) -> None:
    root = tmp_path / "pfs"
    (root / "in").mkdir(parents=True)
    (root / "out").mkdir()
    (root / "in" / "x.csv").write_text("input")
    (root / "out" / "x.csv").symlink_to(root / "in" / "x.csv")
    files, _ = scan_outputs(root / "out")
    assert [(f.remote, f.size) for f in files] == [("/x.csv", 5)]
    assert read_scanned(files[0]) == b"input"


def test_a_file_replaced_by_a_link_after_the_scan_is_not_read(tmp_path: Path) -> None:
    out = tmp_path / "pfs" / "out"
    (out / "sub").mkdir(parents=True)
    (out / "sub" / "f.txt").write_text("mine")
    (tmp_path / "host.txt").write_text("host secret")
    files, _ = scan_outputs(out)
    assert read_scanned(files[0]) == b"mine"

    (out / "sub" / "f.txt").unlink()
    (out / "sub" / "f.txt").symlink_to(tmp_path / "host.txt")
    with pytest.raises(DatumError, match=r"f\.txt"):
        read_scanned(files[0])

    # A directory above it swapped for a link to one holding a file of that name
    (out / "sub" / "f.txt").unlink()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "f.txt").write_text("host secret")
    (out / "sub").rmdir()
    (out / "sub").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(DatumError, match="replaced"):
        read_scanned(files[0])


def test_scan_refuses_names_the_repo_cannot_hold(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "back\\slash").write_text("x")
    with pytest.raises(DatumError, match="backslash"):
        scan_outputs(out)


# --- run_shard -------------------------------------------------------------------------------


async def test_run_shard_in_process(repo: RepoClient, repo_url: str, tmp_path: Path) -> None:
    name, commit = await input_repo(repo, {"/a": b"1", "/b": b"22"})
    job = await Job.open(repo, repo_url)
    await job.write_shard(
        [DatumSpec(id=p, inputs=(file_input("in", name, commit, f"/{p}"),)) for p in "ab"],
        ["sh", "-c", 'wc -c < "$PFS_IN" > "$TUSK_PFS_ROOT/out/$TUSK_DATUM"; test $TUSK_DATUM = a'],
        datum_tries=2,
    )
    spec = await load_shard_spec(repo, job.output_repo, job.meta_commit, job.job, 0)
    fast = RetryPolicy(attempts=2, first_delay=0.01)

    outcome = await run_shard(repo, spec, scratch=tmp_path, retry=fast)

    assert (outcome.succeeded, outcome.failed, outcome.ok) == (["a"], ["b"], False)
    assert [r.attempts for r in outcome.results] == [1, 2]
    assert (await job.output("/a")).strip() == b"1"
    assert list(tmp_path.iterdir()) == []

    again = await run_shard(repo, spec, scratch=tmp_path, retry=fast)
    assert (again.already_done, again.failed) == (["a"], ["b"])


async def test_load_shard_spec_checks_the_address(repo: RepoClient, repo_url: str) -> None:
    job = await Job.open(repo, repo_url)
    spec = await job.write_shard([DatumSpec(id="d", inputs=())], ["true"], shard=1)
    await repo.put_file(
        job.output_repo,
        job.meta_commit,
        f"/jobs/{job.job}/shards/0.json",
        spec.model_dump_json().encode(),
    )
    with pytest.raises(InvalidArgument, match="is for shard 1, not 0"):
        await load_shard_spec(repo, job.output_repo, job.meta_commit, job.job, 0)


async def test_bad_input_name_is_a_worker_error(repo: RepoClient, repo_url: str) -> None:
    name, commit = await input_repo(repo, {"/a": b"1"})
    job = await Job.open(repo, repo_url)
    spec = await job.write_shard(
        [DatumSpec(id="d", inputs=(file_input("out", name, commit, "/a"),))], ["true"]
    )
    with pytest.raises(InvalidArgument, match="'out'"):
        await run_shard(repo, spec)


# --- recording results in batches ------------------------------------------------------------


def counting_meta_writes(repo: RepoClient, job: Job, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of files of each ``put_files`` request to the job's meta commit."""
    writes: list[int] = []
    put_files = repo.put_files

    async def counted(
        name: str, ref: str, files: Iterable[tuple[str, bytes | Path]], **options: Any
    ) -> PutResult:
        files = list(files)
        if ref == job.meta_commit:
            writes.append(len(files))
        return await put_files(name, ref, files, **options)

    monkeypatch.setattr(repo, "put_files", counted)
    return writes


async def test_many_results_are_written_in_few_requests(
    repo: RepoClient, repo_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "BATCH_MAX_WAIT", 60.0)  # only a full batch or the end writes
    job = await Job.open(repo, repo_url)
    count = runtime.BATCH_RESULTS + 6
    spec = await job.write_shard(
        [DatumSpec(id=f"d{i:03d}", inputs=()) for i in range(count)],
        ["sh", "-c", 'echo "log of $TUSK_DATUM"'],
        log_tail_bytes=8,
    )
    writes = counting_meta_writes(repo, job, monkeypatch)

    outcome = await run_shard(repo, spec, scratch=tmp_path)

    assert len(outcome.succeeded) == count
    # A full batch, then the rest at the end: each request the logs plus one batch file.
    assert writes == [runtime.BATCH_RESULTS + 1, 6 + 1]
    batches = await job.batches()
    assert sorted(len(data.splitlines()) for data in batches.values()) == [6, 64]
    results = await job.results()
    assert set(results) == {f"d{i:03d}" for i in range(count)}
    log = await job.log("d007")
    assert "log of d007\n" in log
    assert results["d007"].log_tail == log[-8:]  # as much as the spec says


async def test_results_are_written_while_a_long_datum_runs(
    repo: RepoClient, repo_url: str, tmp_path: Path
) -> None:
    job = await Job.open(repo, repo_url)
    flag = tmp_path / "flag"
    spec = await job.write_shard(
        [DatumSpec(id="quick", inputs=()), DatumSpec(id="long", inputs=())],
        ["sh", "-c", f'[ "$TUSK_DATUM" = quick ] || while [ ! -e {flag} ]; do sleep 0.05; done'],
    )
    shard = asyncio.create_task(run_shard(repo, spec, scratch=tmp_path / "scratch"))
    try:
        deadline = time.monotonic() + 20
        while "quick" not in await job.results():
            assert time.monotonic() < deadline, "the quick datum's result was held back"
            assert not shard.done()
            await asyncio.sleep(0.05)
        assert not shard.done()  # the long datum still runs
    finally:
        flag.touch()
    outcome = await shard
    assert outcome.succeeded == ["quick", "long"]
    assert set(await job.results()) == {"quick", "long"}


async def test_a_cancelled_shard_records_its_finished_datums(
    repo: RepoClient, repo_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "BATCH_MAX_WAIT", 60.0)  # only the stop writes the result
    job = await Job.open(repo, repo_url)
    started = tmp_path / "started"
    spec = await job.write_shard(
        [DatumSpec(id="quick", inputs=()), DatumSpec(id="slow", inputs=())],
        ["sh", "-c", f'[ "$TUSK_DATUM" = quick ] || {{ touch {started}; sleep 60; }}'],
    )
    shard = asyncio.create_task(run_shard(repo, spec, scratch=tmp_path / "scratch", kill_grace=1))
    deadline = time.monotonic() + 20
    while not started.exists():
        assert time.monotonic() < deadline, "the slow datum never started"
        await asyncio.sleep(0.02)
    assert await job.results() == {}

    shard.cancel()
    with pytest.raises(asyncio.CancelledError):
        await shard

    results = await job.results()
    assert set(results) == {"quick"}
    assert results["quick"].state == "success"
    assert "attempt 1 of 1" in await job.log("quick")


async def test_resume_reads_earlier_batches_and_ignores_bad_lines(
    repo: RepoClient, repo_url: str, tmp_path: Path
) -> None:
    job = await Job.open(repo, repo_url)
    runs = tmp_path / "runs"
    spec = await job.write_shard(
        [DatumSpec(id=d, inputs=()) for d in ("done", "failed", "bad-line", "other-job", "new")],
        ["sh", "-c", f'echo "$TUSK_DATUM" >> {runs}'],
    )

    def line(datum: str, state: Literal["success", "failed"], job_id: str = job.job) -> bytes:
        return result_line(job_id, datum, state)

    earlier = [
        line("done", "success") + line("failed", "failed") + b'{"datum": "bad-line", "sta\n',
        line("other-job", "success", job_id="another") + b"not json at all\n",
    ]
    await repo.put_files(
        job.output_repo,
        job.meta_commit,
        [(results_batch_path(job.job, 0, "earlier", i), data) for i, data in enumerate(earlier)],
    )

    outcome = await run_shard(repo, spec, scratch=tmp_path / "scratch")

    assert outcome.already_done == ["done"]
    assert outcome.succeeded == ["failed", "bad-line", "other-job", "new"]
    assert runs.read_text().split() == ["failed", "bad-line", "other-job", "new"]
