"""`tusk up` as a user runs it, console included, on free ports; for the console's tests and
its benchmark."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.backing.common import free_port

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("REPO", "TRIGGER", "SCHEDULER", "INFERENCE", "CONSOLE", "S3_GATEWAY")


@dataclass(frozen=True)
class Stack:
    urls: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def console(self) -> str:
        return self.urls["CONSOLE"]

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-5000:]


@asynccontextmanager
async def tusk_up(
    workdir: Path, *, models: tuple[str, ...] = (), env: dict[str, str] | None = None
) -> AsyncIterator[Stack]:
    ports = {name: free_port() for name in SERVICES}
    child_env = {**os.environ, **{f"TUSK_{n}_PORT": str(p) for n, p in ports.items()}}
    # The pipelines' python3 is the project's interpreter, as for a user in its venv.
    child_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{child_env.get('PATH', '')}"
    child_env.update(env or {})
    log = workdir / "tusk.log"
    argv = [str(Path(sys.executable).parent / "tusk"), "up", "--data-dir", str(workdir / "data")]
    for model in models:
        argv += ["--model", model]
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, cwd=ROOT, env=child_env, stdout=out, stderr=subprocess.STDOUT
        )
    urls = {n: f"http://127.0.0.1:{p}" for n, p in ports.items()}
    stack = Stack(urls, log, process)
    try:
        async with httpx.AsyncClient() as probe:
            while True:  # until the console (started last) answers, or tusk up exits
                try:
                    if (await probe.get(f"{urls['CONSOLE']}/healthz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if process.poll() is not None:
                    raise RuntimeError(f"tusk up exited while starting:\n{stack.log_tail()}")
                await asyncio.sleep(0.1)
        yield stack
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise RuntimeError("tusk up did not stop within 60 s of SIGTERM") from None
