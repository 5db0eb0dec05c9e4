"""`tusk pipeline inspect` and `tusk logs -p` on a spout through `tusk up`: a spout has no jobs,
so they say where its command runs and print its log, and `-f` follows it as it grows."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.backing.common import wait_until

from .conftest import TUSK, Stack, start_stack

# Prints a line, another once the file named in argv[1] exists, and stays up as a spout does
# (committing nothing: not what is tried here).
PROGRAM = """
import os, sys, time
print('spout says hello', flush=True)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.05)
print('and then more', flush=True)
time.sleep(3600)
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(
        tmp_path_factory.mktemp("spout-cli"), env={"TUSK_SCHEDULER_SPOUT_INTERVAL": "0.2"}
    )
    try:
        yield running
    finally:
        running.stop()


def test_inspect_and_logs_say_where_a_spout_runs(stack: Stack, tmp_path: Path) -> None:
    spec = tmp_path / "hello.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "pipeline": {"name": "hello"},
                "spout": {},
                "transform": {"cmd": [sys.executable, "-c", PROGRAM, str(tmp_path / "go")]},
            }
        )
    )
    stack.tusk("pipeline", "create", "-f", spec)
    log = stack.data_dir / "scheduler" / "spouts" / "hello.log"
    wait_until(lambda: log.exists() and b"hello" in log.read_bytes(), 120, "the spout's line")

    inspected = stack.tusk("pipeline", "inspect", "hello").stdout.decode()
    runs = next(line for line in inspected.splitlines() if line.startswith("Runs"))
    assert "process" in runs
    assert "scheduler's machine" in runs

    logs = stack.tusk("logs", "-p", "hello")
    assert "spout says hello" in logs.stdout.decode()
    assert str(log) in " ".join(logs.stderr.decode().split())  # where it is, wrapped or not

    # -f prints what is there, then each line as the spout logs it, until interrupted.
    follower = subprocess.Popen(
        [str(TUSK), "logs", "-p", "hello", "-f"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=stack.env,
    )
    lines: list[bytes] = []
    out = follower.stdout
    assert out is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(out.readline, b"")))
    reader.start()
    try:
        wait_until(lambda: b"spout says hello\n" in lines, 60, "the log's first line followed")
        assert b"and then more\n" not in lines
        (tmp_path / "go").touch()
        wait_until(lambda: b"and then more\n" in lines, 60, "the line logged while following")
        assert lines.count(b"spout says hello\n") == 1  # each line once
    finally:
        follower.send_signal(signal.SIGINT)
        follower.wait(30)
        reader.join(30)
    assert follower.returncode == 130  # interrupted, as it says on stderr
    assert follower.stderr is not None
    assert "following its log" in follower.stderr.read().decode()

    stack.tusk("pipeline", "delete", "hello")


def test_the_log_of_a_spout_in_a_project(stack: Stack, tmp_path: Path) -> None:
    """`tusk logs -p p/x` reaches the scheduler's spout route with the name as one segment."""
    stack.tusk("project", "create", "feeds")
    spec = tmp_path / "hello.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "pipeline": {"name": "hello", "project": {"name": "feeds"}},
                "spout": {},
                "transform": {"cmd": [sys.executable, "-c", PROGRAM, str(tmp_path / "go")]},
            }
        )
    )
    stack.tusk("pipeline", "create", "-f", spec)
    wait_until(
        lambda: b"spout says hello" in stack.tusk("logs", "-p", "feeds/hello").stdout,
        120,
        "the project's spout's line through `tusk logs`",
    )
    stack.tusk("pipeline", "delete", "feeds/hello")
