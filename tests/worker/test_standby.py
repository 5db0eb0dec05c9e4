"""``tusk-worker --standby``: the protocol the local runner uses to keep workers warm. (Whole
shards run through it in the scheduler tests, whose LocalRunner keeps warm workers.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

WORKER = [str(Path(sys.executable).parent / "tusk-worker")]


def standby(stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*WORKER, "--standby"], input=stdin, capture_output=True, timeout=60, check=False
    )


def test_a_standby_worker_let_go_exits_quietly() -> None:
    done = standby(b"")
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")


def test_a_malformed_assignment_is_a_worker_error() -> None:
    done = standby(b'{"argv": "not a list"}\n')
    assert done.returncode == 2
    assert b"not an assignment" in done.stderr


def test_an_assignment_sends_output_to_its_log_and_status_to_its_exit_file(
    tmp_path: Path,
) -> None:
    log, exit_file = tmp_path / "attempt-0.log", tmp_path / "attempt-0.exit"
    assignment = {
        "argv": ["--job", "j"],  # no --output-repo: a usage error, exit status 2
        "env": {"TUSK_REPO_URL": "http://127.0.0.1:9"},
        "log_file": str(log),
        "exit_file": str(exit_file),
    }
    done = standby(json.dumps(assignment).encode() + b"\n")
    assert done.returncode == 2
    assert exit_file.read_text().strip() == "2"
    assert "--output-repo" in log.read_text()  # argparse's usage message went to the log
    assert done.stderr == b""
