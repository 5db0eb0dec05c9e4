"""Helpers of the end-to-end scenarios: commands, waits on conditions, the README's blocks."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
T = TypeVar("T")


def host_env(**extra: str) -> dict[str, str]:
    """The environment of a user on the host: the project's CLI first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    for name in [n for n in env if n.startswith("TUSK_") and n != "TUSK_CACHE_DIR"]:
        del env[name]  # the CLI must find the services on their documented defaults
    env.update(extra)
    return env


def run(
    argv: Sequence[str],
    *,
    cwd: Path = ROOT,
    env: dict[str, str] | None = None,
    check: bool = True,
    timeout: float = 1800,
) -> subprocess.CompletedProcess[str]:
    started = time.monotonic()
    print(f"$ {' '.join(argv)}", flush=True)
    result = subprocess.run(
        list(argv),
        cwd=cwd,
        env=env if env is not None else host_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )
    print(result.stdout[-6000:], end="", flush=True)
    print(f"  (exit {result.returncode} in {time.monotonic() - started:.1f}s)", flush=True)
    if check and result.returncode != 0:
        raise AssertionError(f"`{' '.join(argv)}` failed with exit {result.returncode}")
    return result


def tusk_json(*args: str, env: dict[str, str] | None = None) -> Any:
    return json.loads(run(["tusk", *args, "--json"], env=env).stdout)


def wait_until(what: str, probe: Callable[[], T | None], timeout: float, every: float = 1.0) -> T:
    """Until ``probe`` returns something truthy (its value); fails naming ``what``."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = probe()
            if value:
                return value
        except Exception as e:
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} ({last!r})")
        time.sleep(every)  # the polling interval of a condition, not a wait for a duration


def readme_block(heading: str, index: int = 0) -> str:
    """The ``index``-th ```sh block under the README's ``heading`` (a `## ` section)."""
    text = (ROOT / "README.md").read_text()
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end != -1 else len(text)]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.DOTALL)
    return blocks[index]
