"""`tusk-worker` as a real process against a real repo server: a shard spec written into the
meta commit as the scheduler writes it, outputs in the output commit, results and logs in the
meta commit, exit statuses, retries, timeouts, resuming and shutdown."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import pytest

from tests.backing.common import free_port
from tests.worker.helpers import PY, Job, alive, dir_input, file_input, input_repo
from tusk.client import RepoClient
from tusk.errors import NotFound
from tusk.worker.protocol import DatumSpec, log_path

REPORT = """
import json, os, sys
root = os.environ["TUSK_PFS_ROOT"]
files = sorted(
    os.path.relpath(os.path.join(d, f), root) for d, _, names in os.walk(root) for f in names
)
report = {
    "cwd_root": root,
    "files": {f: open(os.path.join(root, f)).read() for f in files},
    "dirs": sorted(os.path.relpath(d, root) for d, _, _ in os.walk(root)),
    "env": {k: v for k, v in os.environ.items() if k.startswith(("TUSK_", "PFS_", "FOO"))},
    "stdin": sys.stdin.read(),
}
with open(os.path.join(root, "out", os.environ["TUSK_DATUM"] + ".json"), "w") as out:
    json.dump(report, out)
print("hello on stdout", flush=True)
print("hello on stderr", file=sys.stderr, flush=True)
"""


async def test_stages_inputs_runs_and_records(repo: RepoClient, repo_url: str, tmp_path: Path):
    images, c1 = await input_repo(repo, {"/a.txt": b"A", "/b.txt": b"B"})
    docs, c2 = await input_repo(
        repo, {"/dir/x.txt": b"X", "/dir/sub/y.txt": b"Y", "/other.txt": b"no"}
    )
    job = await Job.open(repo, repo_url)
    datum = DatumSpec(
        id="d1",
        inputs=(file_input("img", images, c1, "/a.txt"), dir_input("docs", docs, c2, "/dir")),
    )
    whole = DatumSpec(id="d2", inputs=(dir_input("docs", docs, c2, "/"),))
    await job.write_shard(
        [datum, whole], [PY, "-c", REPORT], stdin=["line one", "line two"], env={"FOO": "bar"}
    )

    code, stderr = await job.run_worker(tmp_path)

    assert code == 0, stderr
    report = json.loads(await job.output("/d1.json"))
    assert report["files"] == {"img/a.txt": "A", "docs/dir/x.txt": "X", "docs/dir/sub/y.txt": "Y"}
    assert "out" in report["dirs"]
    root = report["cwd_root"]
    assert Path(root).parent == tmp_path / "scratch"  # a temporary directory per datum
    assert not Path(root).exists()  # removed afterwards
    env = report["env"]
    assert env["FOO"] == "bar"
    assert env["TUSK_JOB"] == job.job
    assert env["TUSK_DATUM"] == "d1"
    assert env["TUSK_PFS_ROOT"] == root
    assert env["PFS_IMG"] == f"{root}/img/a.txt"
    assert env["PFS_DOCS"] == f"{root}/docs/dir"
    assert report["stdin"] == "line one\nline two\n"
    whole_report = json.loads(await job.output("/d2.json"))
    assert whole_report["files"] == {
        "docs/dir/x.txt": "X",
        "docs/dir/sub/y.txt": "Y",
        "docs/other.txt": "no",
    }
    assert whole_report["cwd_root"] != root

    result = await job.result("d1")
    assert (result.state, result.attempts, result.error, result.shard) == ("success", 1, None, 0)
    [output] = result.outputs
    info = await repo.stat(job.output_repo, job.output_commit, "/d1.json")
    assert (output.path, output.hash, output.size) == ("/d1.json", info.hash, info.size_bytes)
    assert result.started_at <= result.finished_at
    log = await job.log("d1")
    assert "attempt 1 of 1" in log
    assert "hello on stdout\n" in log
    assert "hello on stderr\n" in log
    assert result.log_tail == log  # all of it: under the spec's log_tail_bytes
    assert "datum" in stderr
    assert "state=success" in stderr


OUTPUTS = """
import os
out = os.path.join(os.environ["TUSK_PFS_ROOT"], "out")
os.makedirs(os.path.join(out, "small", "deeper"))
for i in range(30):
    with open(os.path.join(out, "small", f"{i}.txt"), "w") as f:
        f.write(str(i) * i)
with open(os.path.join(out, "small", "deeper", "empty"), "w"):
    pass
with open(os.path.join(out, "big.bin"), "wb") as f:
    f.write(bytes(range(256)) * (3 * 4096 + 7))
os.symlink(os.environ["PFS_IN"], os.path.join(out, "linked.txt"))
os.mkdir(os.path.join(out, "empty-dir"))
"""


async def test_uploads_small_and_large_outputs(repo: RepoClient, repo_url: str, tmp_path: Path):
    name, commit = await input_repo(repo, {"/in.txt": b"input"})
    job = await Job.open(repo, repo_url)
    await job.write_shard(
        [DatumSpec(id="d", inputs=(file_input("in", name, commit, "/in.txt"),))],
        [PY, "-c", OUTPUTS],
    )

    code, stderr = await job.run_worker(tmp_path)

    assert code == 0, stderr
    result = await job.result("d")
    by_path = {o.path: o for o in result.outputs}
    assert len(by_path) == 30 + 3
    assert by_path["/big.bin"].size == 256 * (3 * 4096 + 7)
    assert await job.output("/big.bin") == bytes(range(256)) * (3 * 4096 + 7)
    assert await job.output("/small/7.txt") == b"7" * 7
    assert await job.output("/small/deeper/empty") == b""
    assert await job.output("/linked.txt") == b"input"  # a link to an input is followed
    listed = {f.path async for f in repo.walk(job.output_repo, job.output_commit)}
    assert listed == set(by_path)
    for output in result.outputs:
        info = await repo.stat(job.output_repo, job.output_commit, output.path)
        assert (info.hash, info.size_bytes) == (output.hash, output.size)


async def test_failing_datum_is_retried_and_recorded(
    repo: RepoClient, repo_url: str, tmp_path: Path
):
    job = await Job.open(repo, repo_url)
    script = (
        "import os, sys\n"
        "if os.environ['TUSK_DATUM'] == 'bad':\n"
        "    print('boom, no good', file=sys.stderr)\n"
        "    sys.exit(3)\n"
        "open(os.path.join(os.environ['TUSK_PFS_ROOT'], 'out', 'ok.txt'), 'w').write('ok')\n"
    )
    await job.write_shard(
        [DatumSpec(id="bad", inputs=()), DatumSpec(id="good", inputs=())],
        [PY, "-c", script],
        datum_tries=3,
    )

    code, stderr = await job.run_worker(tmp_path)

    assert code == 1, stderr
    bad = await job.result("bad")
    # The reason quotes the end of the command's stderr.
    assert (bad.state, bad.attempts, bad.outputs) == ("failed", 3, ())
    assert bad.error == "exit code 3; stderr ends:\nboom, no good"
    log = await job.log("bad")
    assert log.count("boom, no good") == 3
    for attempt in (1, 2, 3):
        assert f"attempt {attempt} of 3" in log
        assert f"attempt {attempt} failed: exit code 3" in log
    good = await job.result("good")
    assert (good.state, good.attempts) == ("success", 1)
    assert await job.output("/ok.txt") == b"ok"
    assert "state=failed" in stderr
    assert "state=success" in stderr


async def test_timeout_kills_the_process_group(repo: RepoClient, repo_url: str, tmp_path: Path):
    job = await Job.open(repo, repo_url)
    pids = tmp_path / "pids"
    script = (
        "import os, subprocess, sys, time\n"
        "child = subprocess.Popen(['sleep', '60'])\n"
        f"open({str(pids)!r}, 'a').write(f'{{child.pid}}\\n')\n"
        "print('started', flush=True)\n"
        "time.sleep(60)\n"
    )
    await job.write_shard(
        [DatumSpec(id="slow", inputs=())],
        [PY, "-c", script],
        datum_tries=2,
        datum_timeout_seconds=1,
    )

    started = time.monotonic()
    code, stderr = await job.run_worker(tmp_path)

    assert code == 1, stderr
    assert time.monotonic() - started < 20
    result = await job.result("slow")
    assert (result.state, result.attempts, result.error) == ("failed", 2, "timed out after 1 s")
    log = await job.log("slow")
    assert log.count("\nstarted\n") == 2
    children = [int(p) for p in pids.read_text().split()]
    assert len(children) == 2
    deadline = time.monotonic() + 5
    while any(alive(p) for p in children) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert not any(alive(p) for p in children), "a child of the command outlived its datum"


async def test_resume_skips_finished_datums(repo: RepoClient, repo_url: str, tmp_path: Path):
    job = await Job.open(repo, repo_url)
    runs = tmp_path / "runs"
    flag = tmp_path / "flag"
    script = (
        "import os, sys\n"
        "datum = os.environ['TUSK_DATUM']\n"
        f"open({str(runs)!r}, 'a').write(datum + '\\n')\n"
        f"if datum == 'd2' and not os.path.exists({str(flag)!r}):\n"
        "    sys.exit(1)\n"
        "open(os.path.join(os.environ['TUSK_PFS_ROOT'], 'out', datum), 'w').write(datum)\n"
    )
    await job.write_shard(
        [DatumSpec(id=d, inputs=()) for d in ("d1", "d2", "d3")],
        [PY, "-c", script],
        datum_tries=2,
    )

    code, stderr = await job.run_worker(tmp_path)
    assert code == 1, stderr
    assert runs.read_text().split() == ["d1", "d2", "d2", "d3"]
    assert (await job.result("d2")).state == "failed"

    flag.touch()
    code, stderr = await job.run_worker(tmp_path)
    assert code == 0, stderr
    assert runs.read_text().split() == ["d1", "d2", "d2", "d3", "d2"]  # only the failed one
    assert stderr.count("datum already done") == 2
    result = await job.result("d2")
    assert (result.state, result.attempts) == ("success", 1)
    assert "attempt 1 of 2" in await job.log("d2")

    code, stderr = await job.run_worker(tmp_path)
    assert code == 0, stderr
    assert len(runs.read_text().split()) == 5  # a finished shard runs nothing again


async def test_sigterm_stops_the_command_and_records_what_finished(
    repo: RepoClient, repo_url: str, tmp_path: Path
):
    job = await Job.open(repo, repo_url)
    pid_file = tmp_path / "pid"
    script = (
        "import os, time\n"
        "if os.environ['TUSK_DATUM'] == 'slow':\n"
        f"    open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        "    time.sleep(60)\n"
    )
    await job.write_shard(
        [
            DatumSpec(id="quick", inputs=()),
            DatumSpec(id="slow", inputs=()),
            DatumSpec(id="never", inputs=()),
        ],
        [PY, "-c", script],
    )
    process = await asyncio.create_subprocess_exec(
        *job.worker_args(), env=job.worker_env(tmp_path), stderr=asyncio.subprocess.PIPE
    )
    deadline = time.monotonic() + 60
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the slow datum never started"
        await asyncio.sleep(0.05)
    user_pid = int(pid_file.read_text())

    process.send_signal(signal.SIGTERM)
    _, stderr = await asyncio.wait_for(process.communicate(), 20)

    assert process.returncode == 128 + signal.SIGTERM, stderr.decode()
    assert not alive(user_pid)
    results = await job.results()
    assert results["quick"].state == "success"
    assert "quick" in await job.log("quick")
    for datum in ("slow", "never"):
        assert datum not in results
        with pytest.raises(NotFound):
            await repo.stat(job.output_repo, job.meta_commit, log_path(job.job, datum))
    assert b"stopping" in stderr


LIST_ROOT = """
import os
root = os.environ["TUSK_PFS_ROOT"]
datum = os.environ["TUSK_DATUM"]
entries = sorted(
    os.path.relpath(os.path.join(d, f), root) for d, _, names in os.walk(root) for f in names
)
open(os.path.join(root, "junk-" + datum), "w").write("left behind")
os.makedirs(os.path.join(root, "in", "scribbled"), exist_ok=True)
open(os.path.join(root, "out", datum + ".txt"), "w").write("\\n".join(entries))
"""


async def test_literal_pfs_root_is_cleaned_between_datums(
    repo: RepoClient, repo_url: str, tmp_path: Path
):
    name, commit = await input_repo(repo, {"/1.txt": b"1", "/2.txt": b"2"})
    job = await Job.open(repo, repo_url)
    await job.write_shard(
        [
            DatumSpec(id=f"d{i}", inputs=(file_input("in", name, commit, f"/{i}.txt"),))
            for i in (1, 2)
        ],
        [PY, "-c", LIST_ROOT],
    )
    pfs = tmp_path / "pfs"

    code, stderr = await job.run_worker(tmp_path, TUSK_PFS_ROOT=str(pfs))

    assert code == 0, stderr
    assert (await job.output("/d1.txt")).decode().split() == ["in/1.txt"]
    assert (await job.output("/d2.txt")).decode().split() == ["in/2.txt"]
    assert pfs.is_dir()
    assert list(pfs.iterdir()) == []


async def test_literal_pfs_root_with_foreign_files_is_refused(
    repo: RepoClient, repo_url: str, tmp_path: Path
):
    job = await Job.open(repo, repo_url)
    await job.write_shard([DatumSpec(id="d", inputs=())], [PY, "-c", "pass"])
    pfs = tmp_path / "home"
    pfs.mkdir()
    (pfs / "precious.txt").write_text("do not delete")

    code, stderr = await job.run_worker(tmp_path, TUSK_PFS_ROOT=str(pfs))

    assert code == 2
    assert "precious.txt" in stderr
    assert (pfs / "precious.txt").read_text() == "do not delete"


async def test_worker_errors_exit_2(repo: RepoClient, repo_url: str, tmp_path: Path):
    job = await Job.open(repo, repo_url)
    code, stderr = await job.run_worker(tmp_path)  # no shard spec written
    assert code == 2
    assert "no shard spec" in stderr

    code, stderr = await job.run_worker(tmp_path, TUSK_REPO_URL="not-a-url")
    assert code == 2
    assert "TUSK_REPO_URL" in stderr

    await job.write_shard([DatumSpec(id="d", inputs=())], [PY, "-c", "pass"])
    started = time.monotonic()
    code, stderr = await job.run_worker(
        tmp_path, TUSK_REPO_URL=f"http://127.0.0.1:{free_port()}", TUSK_WORKER_REPO_ATTEMPTS="2"
    )
    assert code == 2
    assert "cannot reach the repo service" in stderr
    assert time.monotonic() - started < 15


async def test_meta_commit_finished_under_the_worker(
    repo: RepoClient, repo_url: str, tmp_path: Path
):
    job = await Job.open(repo, repo_url)
    await job.write_shard([DatumSpec(id="d", inputs=())], [PY, "-c", "pass"])
    await repo.finish_commit(job.output_repo, job.meta_commit)  # the job was stopped

    code, stderr = await job.run_worker(tmp_path)

    assert code == 2
    assert "finished" in stderr


async def test_missing_input_fails_the_datum_with_a_reason(
    repo: RepoClient, repo_url: str, tmp_path: Path
):
    name, commit = await input_repo(repo, {"/here.txt": b"x"})
    job = await Job.open(repo, repo_url)
    await job.write_shard(
        [
            DatumSpec(id="f", inputs=(file_input("in", name, commit, "/gone.txt"),)),
            DatumSpec(id="d", inputs=(dir_input("in", name, commit, "/gone"),)),
            DatumSpec(id="cmd", inputs=()),
        ],
        [PY, "-c", "import os, sys; os.environ['TUSK_DATUM'] == 'cmd' and os.execv('/nope', [''])"],
    )

    code, stderr = await job.run_worker(tmp_path)

    assert code == 1, stderr
    missing_file = await job.result("f")
    assert missing_file.state == "failed"
    assert "/gone.txt" in (missing_file.error or "")
    assert "not found" in await job.log("f")
    assert "/gone" in ((await job.result("d")).error or "")
    assert (await job.result("cmd")).state == "failed"


async def test_shards_of_one_job_write_concurrently(
    repo: RepoClient, repo_url: str, tmp_path: Path
):
    job = await Job.open(repo, repo_url)
    script = (
        "import os\n"
        "open(os.path.join(os.environ['TUSK_PFS_ROOT'], 'out', os.environ['TUSK_DATUM']), 'w')"
        ".write(os.environ['TUSK_SHARD'])\n"
    )
    shards = 3
    for shard in range(shards):
        await job.write_shard(
            [DatumSpec(id=f"s{shard}-{i}", inputs=()) for i in range(5)],
            [PY, "-c", script],
            shard=shard,
        )

    outcomes = await asyncio.gather(*(job.run_worker(tmp_path, s) for s in range(shards)))

    assert [code for code, _ in outcomes] == [0] * shards, outcomes
    for shard in range(shards):
        for i in range(5):
            assert await job.output(f"/s{shard}-{i}") == str(shard).encode()
            assert (await job.result(f"s{shard}-{i}")).shard == shard
