"""`tusk datum restart` and `tusk job delete` with the real `tusk` against `tusk up`: a failed
job's failed datums run again (and only they), and a job goes with its output commit, refused
while a downstream commit derives from it unless `--cascade`."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from .conftest import Stack

# Upper-cases its file; a file saying "bad" fails unless the secret `fix` says "yes". The
# secret is read at run time and is not part of what a datum's identity depends on, so fixing
# it is fixing the world, not the pipeline: the datums that succeeded stay processed.
PICKY = """
import os, sys
root = os.environ["TUSK_PFS_ROOT"]
name = os.listdir(root + "/in")[0]
text = open(f"{root}/in/{name}").read()
if text.strip() == "bad" and os.environ.get("FIXED") != "yes":
    sys.exit("cannot handle " + name)
open(f"{root}/out/{name}", "w").write(text.upper())
"""
COPY = """
import os, shutil
root = os.environ["TUSK_PFS_ROOT"]
for name in os.listdir(root + "/in"):
    shutil.copy(f"{root}/in/{name}", f"{root}/out/{name}")
"""


def as_json(result: subprocess.CompletedProcess[bytes]) -> Any:
    return json.loads(result.stdout)


def spec(tmp: Path, name: str, repo: str, code: str, **extra: Any) -> Path:
    path = tmp / f"{name}.yaml"
    document = {
        "pipeline": {"name": name},
        "input": {"pfs": {"name": "in", "repo": repo, "glob": "/*"}},
        "transform": {"cmd": [sys.executable, "-c", code], **extra},
    }
    path.write_text(yaml.safe_dump(document))
    return path


def put(stack: Stack, tmp: Path, repo: str, files: dict[str, str]) -> str:
    source = Path(tempfile.mkdtemp(dir=tmp))
    for name, text in files.items():
        (source / name).write_text(text)
    stack.tusk("put", f"{repo}@master:/", "-f", source, "-r")
    return str(as_json(stack.tusk("commit", "inspect", f"{repo}@master", "--json"))["id"])


def set_secret(stack: Stack, value: str) -> None:
    secret = stack.data_dir / "secrets" / "fix"
    secret.mkdir(parents=True, exist_ok=True)
    (secret / "fixed").write_text(value)


def test_restart_runs_only_the_failed_datums_again(stack: Stack, tmp_path: Path) -> None:
    set_secret(stack, "no")
    stack.tusk("repo", "create", "rr-in")
    secrets = [{"name": "fix", "key": "fixed", "env_var": "FIXED"}]
    stack.tusk("pipeline", "create", "-f", spec(tmp_path, "rr", "rr-in", PICKY, secrets=secrets))
    commit = put(stack, tmp_path, "rr-in", {"a.txt": "alpha", "b.txt": "bad", "c.txt": "gamma"})
    stack.tusk("job", "wait", "-p", "rr", "-g", commit, check=False)
    failed = as_json(stack.tusk("job", "list", "-p", "rr", "--json"))[0]
    assert failed["state"] == "failure"
    assert failed["counts"]["failed"] == 1

    # What made the datum fail is fixed outside the pipeline: only that datum runs again.
    set_secret(stack, "yes")
    restarted = stack.tusk("datum", "restart", failed["id"][:8])
    new_id = restarted.stdout.decode().strip()
    assert new_id != failed["id"]
    assert "runs the failed datums" in restarted.stderr.decode()
    again = stack.tusk("datum", "restart", failed["id"], "--json")
    assert as_json(again)["id"] == new_id  # asking twice gives the same job

    stack.tusk("job", "wait", new_id)
    job = as_json(stack.tusk("job", "inspect", new_id, "--json"))
    assert job["state"] == "success"
    assert job["global_id"] == failed["global_id"]
    assert (job["counts"]["processed"], job["counts"]["skipped"]) == (1, 2)
    for name, text in (("a.txt", "ALPHA"), ("b.txt", "BAD"), ("c.txt", "GAMMA")):
        assert stack.tusk("get", f"rr@master:/{name}").stdout.decode() == text

    # Nothing is left to restart; the failed job's restart is still the same one.
    refused = stack.tusk("datum", "restart", new_id, check=False)
    assert refused.returncode == 1
    assert "nothing to restart" in refused.stderr.decode()
    older = stack.tusk("datum", "restart", failed["id"], "--json")
    assert as_json(older)["id"] == new_id


def test_delete_takes_the_output_commit_refusing_or_cascading(stack: Stack, tmp_path: Path) -> None:
    stack.tusk("repo", "create", "jd-in")
    stack.tusk("pipeline", "create", "-f", spec(tmp_path, "jd-up", "jd-in", COPY))
    stack.tusk("pipeline", "create", "-f", spec(tmp_path, "jd-down", "jd-up", COPY))
    put(stack, tmp_path, "jd-in", {"one.txt": "1"})
    second = put(stack, tmp_path, "jd-in", {"two.txt": "2"})
    stack.tusk("job", "wait", "-p", "jd-down", "-g", second)
    up_jobs = as_json(stack.tusk("job", "list", "-p", "jd-up", "--json"))
    down_jobs = as_json(stack.tusk("job", "list", "-p", "jd-down", "--json"))
    newest_up, newest_down = up_jobs[0], down_jobs[0]
    assert {j["state"] for j in up_jobs + down_jobs} == {"success"}

    refused = stack.tusk("job", "delete", newest_up["id"], check=False)
    assert refused.returncode == 1
    assert "jd-down" in refused.stderr.decode()  # names what derives from it
    assert stack.tusk("get", "jd-up@master:/two.txt").stdout == b"2"  # nothing deleted

    deleted = as_json(stack.tusk("job", "delete", newest_up["id"], "--cascade", "--json"))
    assert set(deleted["jobs"]) == {newest_up["id"], newest_down["id"]}
    assert f"jd-up@{newest_up['output_commit']}" in deleted["dropped_commits"]
    assert f"jd-down@{newest_down['output_commit']}" in deleted["dropped_commits"]
    remaining = {j["id"] for j in as_json(stack.tusk("job", "list", "--json"))}
    assert newest_up["id"] not in remaining
    assert newest_down["id"] not in remaining
    # The output branches moved back to the previous job's output.
    gone = stack.tusk("get", "jd-up@master:/two.txt", check=False)
    assert gone.returncode == 1
    assert stack.tusk("get", "jd-up@master:/one.txt").stdout == b"1"

    # The deleted job's datums count as unprocessed: the next job runs them again.
    third = put(stack, tmp_path, "jd-in", {"three.txt": "3"})
    stack.tusk("job", "wait", "-p", "jd-up", "-g", third)
    job = as_json(stack.tusk("job", "list", "-p", "jd-up", "--json"))[0]
    assert job["counts"]["processed"] == 2  # two.txt again, and three.txt
    assert stack.tusk("get", "jd-up@master:/two.txt").stdout == b"2"


def test_an_unknown_job_is_not_deleted(stack: Stack) -> None:
    missing = stack.tusk("job", "delete", "0" * 32, check=False)
    assert missing.returncode == 1
    assert "not found" in missing.stderr.decode()


def test_help_explains_both(stack: Stack) -> None:
    restart = stack.tusk("datum", "restart", "--help").stdout.decode()
    assert "failed datums" in restart
    assert "same input commits" in restart
    delete = stack.tusk("job", "delete", "--help").stdout.decode()
    assert "--cascade" in delete
    assert "output commit" in delete
