"""What authentication and authorization cost on the repo service: the same reads and writes
against two repo services started side by side on the embedded defaults, one without tokens
(the baseline) and one with TUSK_API_TOKENS, called with a user's token that holds a writer
role (a token looked up in the table, roles checked, each write recorded in the audit log).

    python -m loadtest.bench_auth [--reads 500] [--writes 200]

Figures are per request, sequential (one client, no concurrency), median and p99.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from loadtest.report import Figure, Report, environment, percentile, print_table, say

ROOT = "bench-root-token"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def repo_service(data: Path, tokens: str | None) -> Iterator[str]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
    env["TUSK_DATA_DIR"] = str(data)
    if tokens:
        env["TUSK_API_TOKENS"] = tokens
    log = (data / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "tusk_repo.app:create_app",
         "--port", str(port), "--log-level", "warning"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def user_headers(url: str) -> dict[str, str]:
    """A user (not an admin) with the writer role on the benchmark's repo."""
    root = {"Authorization": f"Bearer {ROOT}"}
    token = httpx.post(f"{url}/v1/auth/tokens", json={"identity": "bench"}, headers=root)
    token.raise_for_status()
    grant = {"identity": "bench", "role": "writer", "resource": "repo:bench"}
    httpx.post(f"{url}/v1/auth/roles", json=grant, headers=root).raise_for_status()
    return {"Authorization": f"Bearer {token.json()['token']}"}


def measure(url: str, headers: dict[str, str], reads: int, writes: int) -> dict[str, list[float]]:
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        if client.get("/v1/repos/bench").status_code == 404:
            admin = {"Authorization": f"Bearer {ROOT}"}
            client.post("/v1/repos", json={"name": "bench"}, headers=admin).raise_for_status()
        commit = client.post("/v1/repos/bench/commits", json={}).json()["id"]
        client.put(f"/v1/repos/bench/commits/{commit}/file", params={"path": "/f"}, content=b"x")

        def timed(call: Callable[[int], httpx.Response], n: int) -> list[float]:
            times = []
            for i in range(n):
                started = time.perf_counter()
                response = call(i)
                times.append(time.perf_counter() - started)
                response.raise_for_status()
            return times

        stat = timed(
            lambda _: client.get(f"/v1/repos/bench/commits/{commit}/stat", params={"path": "/f"}),
            reads,
        )
        put = timed(
            lambda i: client.put(
                f"/v1/repos/bench/commits/{commit}/file", params={"path": f"/w/{i}"}, content=b"y"
            ),
            writes,
        )
    return {"read (stat)": stat, "write (put)": put}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reads", type=int, default=500)
    parser.add_argument("--writes", type=int, default=200)
    args = parser.parse_args(argv)
    report = Report(environment=environment())
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, tokens in (("off", None), ("on", ROOT)):
            data = Path(tmp) / name
            data.mkdir()
            with repo_service(data, tokens) as url:
                if tokens:
                    # The repo is the admin's; the user holds writer on it.
                    headers = {"Authorization": f"Bearer {ROOT}"}
                    httpx.post(f"{url}/v1/repos", json={"name": "bench"}, headers=headers)
                    headers = user_headers(url)
                else:
                    headers = {}
                say(f"auth {name}: {args.reads} reads, {args.writes} writes")
                results[name] = measure(url, headers, args.reads, args.writes)
    for kind in ("read (stat)", "write (put)"):
        for p in (50, 99):
            off = percentile(results["off"][kind], p) * 1000
            on = percentile(results["on"][kind], p) * 1000
            report.add(
                Figure(
                    name=f"{kind} p{p}, auth on",
                    value=on,
                    unit="ms",
                    target="-",
                    met=None,
                    baseline_name="auth off",
                    baseline=off,
                    ratio=on / off,
                )
            )
    report.environment["load_average_after"] = os.getloadavg()
    print_table(report, "repo service on SQLite + local directory (uvicorn, one process)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
