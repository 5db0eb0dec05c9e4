"""Datum batching (``transform.datum_batching``): `tusk-worker` against a real repo server, the
command started once per shard and asking for datums in turn (the Python helper, `tusk-worker
next-datum` and Pachyderm's `pachctl next datum`), with each datum's outputs, result, log,
retries, timeout, err_cmd and skipping as for a command run per datum."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.backing.bubblewrap import ensure_installed
from tests.worker.helpers import PY, Job, file_input, input_repo
from tusk.client import RepoClient
from tusk.errors import NotFound
from tusk.worker.protocol import DatumSpec

# Loads its "model" once, then handles each datum in this one process: writes the input's
# contents upper-cased and the process id. A datum whose input says "fail" raises, "flaky"
# raises only on its first try, "crash" ends the process on its first try (marked in $MARKS, which
# outlives the process), "slow" hangs.
MODEL_CODE = """
import os, sys, time
from tusk.worker.nextdatum import batch_all_datums
print("loading the model", flush=True)
seen = set()

@batch_all_datums
def transform():
    datum = os.environ["PACH_DATUM_ID"]
    text = open(os.environ["words"]).read()
    first = datum not in seen
    seen.add(datum)
    if text == "fail" or (text == "flaky" and first):
        raise ValueError("cannot read " + text)
    crashed = os.path.join(os.environ.get("MARKS", "/nonexistent"), datum)
    if text == "crash" and not os.path.exists(crashed):
        open(crashed, "w").close()
        os._exit(5)
    if text == "slow":
        time.sleep(600)
    print("handled", datum, flush=True)
    target = os.path.join(os.environ["TUSK_PFS_ROOT"], "out", datum + ".txt")
    if text == "link":  # an output that is a link to the datum's input
        os.symlink(os.environ["words"], target)
        return
    with open(target, "w") as out:
        out.write(text.upper() + " " + str(os.getpid()))
        if text == "huge":  # over the repo's largest file
            out.write("x" * (5 << 20))

transform()
"""


async def _words(repo: RepoClient, words: dict[str, str]) -> list[DatumSpec]:
    name, commit = await input_repo(repo, {f"/{k}.txt": v.encode() for k, v in words.items()})
    return [
        DatumSpec(id=k, inputs=(file_input("words", name, commit, f"/{k}.txt"),)) for k in words
    ]


async def test_one_process_handles_every_datum(repo: RepoClient, repo_url: str, tmp_path: Path):
    datums = await _words(repo, {f"d{i}": f"word{i}" for i in range(6)})
    job = await Job.open(repo, repo_url)
    await job.write_shard(datums, [PY, "-c", MODEL_CODE], datum_batching=True)

    code, stderr = await job.run_worker(tmp_path)

    assert code == 0, stderr
    pids = set()
    for i in range(6):
        text, pid = (await job.output(f"/d{i}.txt")).decode().split()
        assert text == f"WORD{i}"
        pids.add(pid)
    assert len(pids) == 1  # the model was loaded once
    results = await job.results()
    assert {r.state for r in results.values()} == {"success"}
    assert [o.path for o in results["d3"].outputs] == ["/d3.txt"]
    # What the command printed before its first datum is in that datum's log.
    first = await job.log("d0")
    assert "loading the model" in first
    assert "handled d0" in first
    assert "handled d1" not in first
    assert "handled d1" in await job.log("d1")


async def test_failures_are_per_datum_with_retries_and_restarts(
    repo: RepoClient, repo_url: str, tmp_path: Path
):
    datums = await _words(
        repo, {"a": "alpha", "b": "fail", "c": "flaky", "d": "crash", "e": "omega"}
    )
    job = await Job.open(repo, repo_url)
    await job.write_shard(
        datums, [PY, "-c", MODEL_CODE], datum_batching=True, datum_tries=2,
        env={"MARKS": str(tmp_path)},
    )  # fmt: skip

    code, stderr = await job.run_worker(tmp_path)

    assert code == 1, stderr  # some datums failed
    results = await job.results()
    assert results["b"].state == "failed"
    assert results["b"].attempts == 2
    assert "ValueError: cannot read fail" in (results["b"].error or "")
    assert (results["c"].state, results["c"].attempts) == ("success", 2)
    assert (results["d"].state, results["d"].attempts) == ("success", 2)
    assert "exit code 5" in await job.log("d")
    for name in ("a", "e"):
        assert results[name].state == "success"
    assert (await job.output("/c.txt")).startswith(b"FLAKY")
    # The crash cost a process: the datums after it were served by a new one.
    pid_a = (await job.output("/a.txt")).split()[1]
    pid_e = (await job.output("/e.txt")).split()[1]
    assert pid_a != pid_e
    with pytest.raises(NotFound):
        await job.output("/b.txt")


async def test_uploads_overlap_the_next_datum_and_a_refused_one_fails_only_its_datum(
    repo: RepoClient, repo_url: str, tmp_path: Path
):
    # Each datum's outputs are uploaded while the command works on the next one: an upload the
    # repo refuses (over TUSK_REPO_MAX_FILE_BYTES) fails that datum's attempt, found when the
    # command asks for the datum after, and the datum is tried again; the rest go on.
    words = {"a": "alpha", "h": "huge", "c": "gamma", "e": "epsilon", "l": "link"}
    datums = await _words(repo, words)
    job = await Job.open(repo, repo_url)
    await job.write_shard(datums, [PY, "-c", MODEL_CODE], datum_batching=True, datum_tries=2)

    code, stderr = await job.run_worker(tmp_path)

    assert code == 1, stderr  # the huge datum failed
    results = await job.results()
    assert (results["h"].state, results["h"].attempts) == ("failed", 2)
    assert "cannot upload output /h.txt" in (results["h"].error or "")
    assert {results[k].state for k in "acel"} == {"success"}
    assert (await job.output("/c.txt")).startswith(b"GAMMA")
    # A link into the inputs is uploaded before the next datum replaces them.
    assert await job.output("/l.txt") == b"link"
    pids = {(await job.output(f"/{k}.txt")).split()[1] for k in "ace"}
    assert len(pids) == 1  # a refused upload costs no restart
    with pytest.raises(NotFound):
        await job.output("/h.txt")
    assert "=== tusk: attempt 1 failed: cannot upload output /h.txt" in await job.log("h")


async def test_a_stopped_workers_scratch_space_is_cleared_first(
    repo: RepoClient, repo_url: str, tmp_path: Path
):
    # A pod's /pfs outlives a worker that was stopped mid-shard: its half-moved files must not
    # stop the next one (nor reach any datum).
    datums = await _words(repo, {"a": "alpha", "b": "beta"})
    job = await Job.open(repo, repo_url)
    await job.write_shard(datums, [PY, "-c", MODEL_CODE], datum_batching=True)
    pfs = tmp_path / "pfs"
    for left in ("next-1/words", "out-2", "next-3/words"):
        (pfs / ".scratch" / left).mkdir(parents=True)
    (pfs / ".scratch" / "next-1" / "words" / "stale.txt").write_text("stale")

    code, stderr = await job.run_worker(tmp_path, TUSK_PFS_ROOT=str(pfs))

    assert code == 0, stderr
    assert (await job.output("/a.txt")).startswith(b"ALPHA")
    assert (await job.output("/b.txt")).startswith(b"BETA")
    assert not (pfs / ".scratch").exists()


async def test_err_cmd_recovers_and_a_timeout_stops_only_its_datum(
    repo: RepoClient, repo_url: str, tmp_path: Path
):
    datums = await _words(repo, {"a": "slow", "b": "fail", "c": "gamma"})
    job = await Job.open(repo, repo_url)
    await job.write_shard(
        datums,
        [PY, "-c", MODEL_CODE],
        datum_batching=True,
        datum_timeout_seconds=3,
        err_cmd=("sh", "-c", 'test "$(cat "$words")" = fail'),
    )

    code, stderr = await job.run_worker(tmp_path)

    results = await job.results()
    assert results["a"].state == "failed", stderr
    assert "timed out after 3 s" in (results["a"].error or "")
    assert "b" in results, stderr
    assert results["b"].state == "recovered"
    assert results["c"].state == "success"
    assert code == 1


SHELL_LOOP = """
while true; do
  {ask}
  name=$(ls "$TUSK_PFS_ROOT/words")
  tr a-z A-Z < "$TUSK_PFS_ROOT/words/$name" > "$TUSK_PFS_ROOT/out/$name"
done
"""


@pytest.mark.parametrize(
    "ask",
    ["pachctl next datum", 'eval "$(tusk-worker next-datum --export)"; test -n "$PACH_DATUM_ID"'],
)
async def test_shell_code_written_for_pachyderm_runs_unchanged(
    repo: RepoClient, repo_url: str, tmp_path: Path, ask: str
):
    datums = await _words(repo, {"x": "ex", "y": "why"})
    job = await Job.open(repo, repo_url)
    await job.write_shard(datums, ["sh", "-c", SHELL_LOOP.format(ask=ask)], datum_batching=True)

    code, stderr = await job.run_worker(tmp_path)

    assert code == 0, (stderr, await job.log("x"))
    assert await job.output("/x.txt") == b"EX"
    assert await job.output("/y.txt") == b"WHY"


async def test_a_command_that_never_asks_fails_every_datum_saying_why(
    repo: RepoClient, repo_url: str, tmp_path: Path
):
    datums = await _words(repo, {"a": "alpha", "b": "beta"})
    job = await Job.open(repo, repo_url)
    await job.write_shard(datums, ["sh", "-c", "echo oops >&2; exit 4"], datum_batching=True)

    code, _ = await job.run_worker(tmp_path)

    assert code == 1
    results = await job.results()
    for name in ("a", "b"):
        error = results[name].error or ""
        assert "exit code 4" in error
        assert "without asking for a datum" in error
        assert "tusk-worker next-datum" in error


async def test_datums_already_done_are_not_served_again(
    repo: RepoClient, repo_url: str, tmp_path: Path
):
    datums = await _words(repo, {"a": "alpha", "b": "beta"})
    job = await Job.open(repo, repo_url)
    await job.write_shard(datums, [PY, "-c", MODEL_CODE], datum_batching=True)
    code, stderr = await job.run_worker(tmp_path)
    assert code == 0, stderr

    # Run the shard again with a command that fails anything it is given: nothing is.
    await job.write_shard(datums, ["sh", "-c", "exit 9"], datum_batching=True)
    code, stderr = await job.run_worker(tmp_path)

    assert code == 0, stderr
    assert {r.state for r in (await job.results()).values()} == {"success"}


SANDBOXED_LOOP = """
import os, json
from tusk.worker.nextdatum import next_datum, NoMoreDatums
while True:
    env = next_datum()
    with open("/pfs/out/" + env["PACH_DATUM_ID"] + ".json", "w") as out:
        json.dump({"words": open("/pfs/words/" + os.listdir("/pfs/words")[0]).read(),
                   "env": env, "pfs": sorted(os.listdir("/pfs"))}, out)
"""


async def test_in_the_sandbox_each_datum_is_at_pfs(repo: RepoClient, repo_url: str, tmp_path: Path):
    ensure_installed()
    datums = await _words(repo, {"a": "alpha", "b": "beta"})
    job = await Job.open(repo, repo_url)
    await job.write_shard(datums, [PY, "-c", SANDBOXED_LOOP], datum_batching=True)

    code, stderr = await job.run_worker(tmp_path, TUSK_WORKER_SANDBOX="bwrap")

    assert code == 0, (stderr, await job.log("a"))
    for name, text in (("a", "alpha"), ("b", "beta")):
        report = json.loads(await job.output(f"/{name}.json"))
        assert report["words"] == text
        assert report["pfs"] == ["out", "words"]
        assert report["env"]["PACH_DATUM_ID"] == name
        assert report["env"]["words"] == f"/pfs/words/{name}.txt"
