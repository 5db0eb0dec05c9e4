"""Telling an out-of-memory kill from any other SIGKILL, by the memory cgroup's counter."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tusk.worker import process
from tusk.worker.oom import memory_limit, oom_kills
from tusk.worker.process import DatumLog, run_command


def cgroup_v1(tmp_path: Path, kills: int, limit: int) -> tuple[Path, Path]:
    """A v1 memory hierarchy where the worker's cgroup is /pod/ctr."""
    own = tmp_path / "cg" / "memory" / "pod" / "ctr"
    own.mkdir(parents=True)
    (own / "memory.oom_control").write_text(f"oom_kill_disable 0\nunder_oom 0\noom_kill {kills}\n")
    (own / "memory.limit_in_bytes").write_text(f"{limit}\n")
    self_cgroup = tmp_path / "self"
    self_cgroup.write_text("12:cpu,cpuacct:/pod/ctr\n4:memory:/pod/ctr\n")
    return tmp_path / "cg", self_cgroup


def test_v1_counter_and_limit_of_the_workers_own_cgroup(tmp_path: Path) -> None:
    root, self_cgroup = cgroup_v1(tmp_path, kills=3, limit=128 << 20)
    assert oom_kills(root, self_cgroup) == 3
    assert memory_limit(root, self_cgroup) == "128 MiB"


def test_v2_in_a_cgroup_namespace_reads_the_mount_root(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    root.mkdir()
    (root / "memory.events").write_text("low 0\nhigh 0\nmax 7\noom 2\noom_kill 2\n")
    (root / "memory.max").write_text("max\n")
    self_cgroup = tmp_path / "self"
    self_cgroup.write_text("0::/\n")
    assert oom_kills(root, self_cgroup) == 2
    assert memory_limit(root, self_cgroup) is None  # no limit


def test_no_cgroup_filesystem_means_unknown(tmp_path: Path) -> None:
    assert oom_kills(tmp_path / "none", tmp_path / "none-self") is None
    assert memory_limit(tmp_path / "none", tmp_path / "none-self") is None


async def run(cmd: list[str]) -> str | None:
    result = await run_command(
        cmd, stdin_lines=(), env=dict(os.environ), log=DatumLog(), time_limit=None, kill_grace=1.0
    )
    return result.failure


async def test_a_sigkill_while_the_counter_grew_is_named_out_of_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counts = iter([4, 5])
    monkeypatch.setattr(process, "oom_kills", lambda: next(counts))
    monkeypatch.setattr(process, "memory_limit", lambda: "128 MiB")
    failure = await run(["sh", "-c", "kill -9 $$"])
    assert failure == "killed by signal SIGKILL: out of memory (the memory limit is 128 MiB)"


async def test_a_sigkill_with_the_counter_unchanged_is_only_a_sigkill(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(process, "oom_kills", lambda: 4)
    assert await run(["sh", "-c", "kill -9 $$"]) == "killed by signal SIGKILL"
    monkeypatch.setattr(process, "oom_kills", lambda: None)
    assert await run(["sh", "-c", "kill -9 $$"]) == "killed by signal SIGKILL"
