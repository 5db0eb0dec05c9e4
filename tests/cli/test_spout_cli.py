"""`tusk pipeline inspect` and `tusk logs -p` on a spout through `tusk up`: a spout has no jobs,
so they say where its command runs and print the end of its log."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.backing.common import wait_until

from .conftest import Stack, start_stack

# Prints a line, then stays up as a spout does (committing nothing: not what is tried here).
PROGRAM = "import time; print('spout says hello', flush=True); time.sleep(3600)"


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
                "transform": {"cmd": [sys.executable, "-c", PROGRAM]},
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

    followed = stack.tusk("logs", "-p", "hello", "-f")  # a spout has no job to follow
    assert followed.returncode == 0
    assert "tail -f" in followed.stderr.decode()

    stack.tusk("pipeline", "delete", "hello")
