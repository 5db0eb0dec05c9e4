"""What authentication and authorization cost on the repo service: the same reads and writes
against two repo services started side by side on the embedded defaults, one without tokens
(the baseline) and one with TUSK_API_TOKENS, called with a user's token that holds a writer
role (a token looked up in the table, roles checked, each write recorded in the audit log).

    python -m loadtest.bench_auth [--reads 500] [--writes 200]

Figures are per request, sequential (one client per service, no concurrency), median and
p99; requests alternate between the two services so that other load weighs on both alike.
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


def prepare(client: httpx.Client) -> str:
    """An open commit of the benchmark's repo holding one file; its id."""
    commit = client.post("/v1/repos/bench/commits", json={})
    commit.raise_for_status()
    commit_id = str(commit.json()["id"])
    client.put(
        f"/v1/repos/bench/commits/{commit_id}/file", params={"path": "/f"}, content=b"x"
    ).raise_for_status()
    return commit_id


def measure(
    clients: dict[str, httpx.Client], reads: int, writes: int, warmup: int
) -> dict[str, dict[str, list[float]]]:
    """Requests alternate between the services (which goes first alternates too), so that
    whatever else loads the machine weighs on both alike."""
    commits = {name: prepare(client) for name, client in clients.items()}
    times: dict[str, dict[str, list[float]]] = {n: {} for n in clients}

    def run(kind: str, n: int, call: Callable[[httpx.Client, str, int], httpx.Response]) -> None:
        order = list(clients)
        for i in range(warmup + n):
            for name in order if i % 2 else reversed(order):
                started = time.perf_counter()
                response = call(clients[name], commits[name], i)
                elapsed = time.perf_counter() - started
                response.raise_for_status()
                if i >= warmup:
                    times[name].setdefault(kind, []).append(elapsed)

    run(
        "read (stat)",
        reads,
        lambda c, commit, _: c.get(f"/v1/repos/bench/commits/{commit}/stat", params={"path": "/f"}),
    )
    run(
        "write (put)",
        writes,
        lambda c, commit, i: c.put(
            f"/v1/repos/bench/commits/{commit}/file", params={"path": f"/w/{i}"}, content=b"y"
        ),
    )
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reads", type=int, default=500)
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args(argv)
    report = Report(environment=environment())
    admin = {"Authorization": f"Bearer {ROOT}"}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "off").mkdir()
        (Path(tmp) / "on").mkdir()
        with (
            repo_service(Path(tmp) / "off", None) as off_url,
            repo_service(Path(tmp) / "on", ROOT) as on_url,
        ):
            for url in (off_url, on_url):
                httpx.post(f"{url}/v1/repos", json={"name": "bench"}, headers=admin)
            with (
                httpx.Client(base_url=off_url, timeout=60) as off,
                httpx.Client(base_url=on_url, headers=user_headers(on_url), timeout=60) as on,
            ):
                say(f"{args.reads} reads and {args.writes} writes on each, alternating")
                results = measure({"off": off, "on": on}, args.reads, args.writes, args.warmup)
    for kind in ("read (stat)", "write (put)"):
        for p in (50, 99):
            baseline = percentile(results["off"][kind], p) * 1000
            value = percentile(results["on"][kind], p) * 1000
            report.add(
                Figure(
                    name=f"{kind} p{p}, auth on",
                    value=value,
                    unit="ms",
                    target="-",
                    met=None,
                    baseline_name="auth off",
                    baseline=baseline,
                    ratio=value / baseline,
                )
            )
    report.environment["load_average_after"] = os.getloadavg()
    print_table(report, "repo service on SQLite + local directory (uvicorn, one process)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
