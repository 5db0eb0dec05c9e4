"""`tusk logs -f` through `tusk up`: a datum's lines while it runs, `running` in `tusk datum
list`, and every line once when it ends."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.backing.common import wait_until

from .conftest import TUSK, Stack, start_stack

WAIT = 300.0  # a bound for a hang, not a deadline the test expects to approach


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # Unsandboxed, so that the command can wait for a file the test makes.
    running = start_stack(tmp_path_factory.mktemp("live"), env={"TUSK_WORKER_SANDBOX": "off"})
    try:
        yield running
    finally:
        running.stop()


def lines_of(process: subprocess.Popen[bytes]) -> tuple[queue.Queue[str], threading.Thread]:
    """The process's stdout, line by line as it comes; the thread ends with the output."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.decode().rstrip("\n"))

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return lines, thread


def until_line(lines: queue.Queue[str], wanted: str, seen: list[str]) -> None:
    while wanted not in seen:
        seen.append(lines.get(timeout=WAIT))


def test_a_datum_is_followed_while_it_runs(stack: Stack, tmp_path: Path) -> None:
    go = tmp_path / "go"
    stack.tusk("repo", "create", "live-in")
    spec = tmp_path / "live.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "pipeline": {"name": "live"},
                "input": {"pfs": {"repo": "live-in", "glob": "/*"}},
                "transform": {
                    "cmd": [
                        "sh", "-c",
                        f"echo 'first line'; while [ ! -e {go} ]; do sleep 0.05; done; "
                        "echo 'last line' >&2",
                    ]
                },
            }
        )
    )
    stack.tusk("pipeline", "create", "-f", spec)
    stack.tusk("put", "live-in@master:/a.txt", "-f", "-", input=b"a")

    def a_job() -> bool:
        return bool(json.loads(stack.tusk("job", "list", "-p", "live", "--json").stdout))

    wait_until(a_job, WAIT, "a job of the pipeline")
    job = json.loads(stack.tusk("job", "list", "-p", "live", "--json").stdout)[0]["id"]
    follower = subprocess.Popen(
        [str(TUSK), "logs", "-p", "live", "-f"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=stack.env,
    )
    try:
        seen: list[str] = []
        lines, pump = lines_of(follower)
        until_line(lines, "first line", seen)

        # The datum is still running (it waits for the file): the line came from its worker.
        datums = json.loads(stack.tusk("datum", "list", job, "--json").stdout)
        assert [d["state"] for d in datums] == ["running"]
        [datum] = [d["datum"] for d in datums]
        assert f"--- datum {datum[:16]} (running)" in seen

        go.touch()
        follower.wait(WAIT)
        pump.join(WAIT)
        assert follower.stderr is not None
        err = follower.stderr.read()
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    printed = [*seen, *list(lines.queue)]
    assert follower.returncode == 0, err.decode()
    assert printed.count("first line") == 1
    assert printed.count("last line") == 1
    assert printed.index("first line") < printed.index("last line")
    assert printed[-1] == f"--- datum {datum[:16]} ended: success"
    assert f"job {job} ended: success" in err.decode()
    datums = json.loads(stack.tusk("datum", "list", job, "--json").stdout)
    assert [d["state"] for d in datums] == ["success"]
    after = stack.tusk("logs", "-p", "live").stdout.decode().splitlines()
    assert after[0] == f"--- datum {datum} (success)"
    assert (after[2], after[3]) == ("first line", "last line")
