"""tusk's inference service beside KServe's Python model server and MLServer, in one run.

    .venv/bin/python -m loadtest.bench_peers_inference [--quick] [--rounds N] [--json OUT]

Installs the peers first if needed (``loadtest.peers.install``: each in its own virtualenv
from PyPI). Every server serves the same two ONNX files through onnxruntime with the same
session settings (one intra-op thread, one inter-op thread, no spinning), in one process with
one worker, over OIP v2 REST:

- ``credit``: the credit example's model, trained here by the example's own scripts;
- ``slow``: sixteen chained 1024x1024 MatMuls (``tests.inference.models.slow``), >= 1 ms a row.

Each model is served twice where the server can batch: ``<model>`` unbatched and
``<model>_b`` with the server's own adaptive batching (at most 32 rows, 1 ms wait: tusk's
``batching: always``, MLServer's ``max_batch_size``/``max_batch_time``). KServe's Python server
has no batching of its own (its Kubernetes agent batches), so it has no ``_b`` rows. tusk's
inference service reads its models from a repo service (SQLite + a local directory, in a
process of its own, not on the request path).

One load generator (``loadtest.loadgen``, raw asyncio on uvloop) drives every server from its
own process. For each model: the most requests a second at concurrency 8 and 64 (closed loop),
and p50/p99 at a fixed 500 and 1,000 req/s (open loop, latency counted from when each request
was due); a fixed rate above what the server reached closed-loop is not run (its latency grows
without bound) and shows as "saturated". Servers are interleaved: every round measures each
workload on each server in turn, the order rotated per round; the median over rounds is
reported. Then resident memory of each server's process tree, and Triton's stock HTTP client
(``tritonclient``, in its own virtualenv) against each server.

The table gives each figure for tusk and each peer, and ``tusk / best peer``; the JSON file
keeps every sample.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import numpy as np
import onnxruntime as ort
import psutil

from loadtest.bench_inference import (
    aloadgen,
    commit,
    cpu_seconds,
    process,
    raw_onnxruntime,
    run_step,
    wait_http,
)
from loadtest.peers import install
from loadtest.report import environment, say
from tests.backing.common import free_port
from tests.inference import models as test_models
from tusk.client import RepoClient

PEERS_DIR = Path(__file__).resolve().parent / "peers"
MiB = 1 << 20
BATCH_ROWS = 32
BATCH_WAIT_S = 0.001
LOWER_IS_BETTER = ("ms", "MiB", "us")


@dataclass(frozen=True)
class Plan:
    seconds: float
    rounds: int
    concurrencies: tuple[int, ...] = (8, 64)
    rates: tuple[int, ...] = (500, 1000)
    # No server reaches 500 req/s on a >= 1 ms model with one core's worth of worker, so its
    # fixed-rate latency is taken at rates every server can hold.
    slow_rates: tuple[int, ...] = (25, 50)
    triton_seconds: float = 3.0

    @classmethod
    def full(cls) -> Plan:
        return cls(seconds=5, rounds=3)

    def rates_for(self, model: str) -> tuple[int, ...]:
        return self.slow_rates if model == "slow" else self.rates

    @classmethod
    def quick(cls) -> Plan:
        return cls(seconds=2, rounds=1, triton_seconds=1.0)


@dataclass
class Server:
    name: str
    url: str
    pid: int
    batching: bool

    def rss_mib(self) -> float:
        """The process tree's resident memory (MLServer and KServe may fork helpers)."""
        root = psutil.Process(self.pid)
        return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / MiB

    def cpu(self) -> float:
        root = psutil.Process(self.pid)
        return cpu_seconds(self.pid) + sum(
            cpu_seconds(p.pid) for p in root.children(recursive=True)
        )


@dataclass
class Row:
    workload: str
    unit: str
    values: dict[str, float | None] = field(default_factory=dict)  # server -> median
    samples: dict[str, list[Any]] = field(default_factory=dict)
    note: str = ""

    @property
    def lower_is_better(self) -> bool:
        return self.unit in LOWER_IS_BETTER

    def best_peer(self) -> tuple[str, float] | None:
        peers = [(k, v) for k, v in self.values.items() if k != "tusk" and v is not None]
        if not peers:
            return None
        pick = min if self.lower_is_better else max
        return pick(peers, key=lambda kv: kv[1])

    def ratio(self) -> float | None:
        best = self.best_peer()
        tusk = self.values.get("tusk")
        if best is None or tusk is None or best[1] == 0:
            return None
        return tusk / best[1]

    def tusk_ahead(self) -> bool | None:
        ratio = self.ratio()
        if ratio is None:
            return None
        return ratio <= 1.0 if self.lower_is_better else ratio >= 1.0


# --- models and requests -----------------------------------------------------------------------


def train_credit(work: Path) -> tuple[bytes, int]:
    """The credit example's model on two days of generated data; its feature count."""
    pfs = work / "pfs"
    for day in (1, 2):
        run_step("generate.py", "--day", str(day), "--rows", "2000", "--out", str(pfs / "pre/raw"))
    run_step("preprocess.py", env={"TUSK_PFS_ROOT": str(pfs / "pre")})
    (pfs / "train").mkdir(parents=True)
    (pfs / "train" / "preprocess").symlink_to(pfs / "pre" / "out")
    run_step("train.py", env={"TUSK_PFS_ROOT": str(pfs / "train")})
    metrics = json.loads((pfs / "train" / "out" / "metrics.json").read_text())
    return (pfs / "train" / "out" / "model.onnx").read_bytes(), len(metrics["feature_names"])


def request_body(path: Path, name: str, row: np.ndarray[Any, Any]) -> None:
    path.write_text(
        json.dumps(
            {
                "inputs": [
                    {
                        "name": name,
                        "shape": [1, len(row)],
                        "datatype": "FP32",
                        "data": row.astype(np.float32).tolist(),
                    }
                ]
            }
        )
    )


# --- the servers -------------------------------------------------------------------------------


def start_tusk(
    stack: ExitStack, work: Path, models: dict[str, Path], ort_threads: int
) -> Server:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSK_")}
    env.update({"TUSK_LOG_LEVEL": "WARNING", "TUSK_DATA_DIR": str(work / "tusk-data")})
    repo_port = free_port()
    repo_log = work / "tusk-repo.log"
    repo = stack.enter_context(
        process(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "tusk_repo.app:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(repo_port),
                "--no-access-log",
            ],
            {**env, "TUSK_REPO_PORT": str(repo_port)},
            repo_log,
        )
    )
    repo_url = f"http://127.0.0.1:{repo_port}"
    wait_http(f"{repo_url}/readyz", repo, repo_log)

    async def publish() -> None:
        async with RepoClient(repo_url) as repos:
            await repos.create_repo("models")
            await commit(repos, "models", {f"/{k}.onnx": p.read_bytes() for k, p in models.items()})

    asyncio.run(publish())
    spec = ["models:"]
    for name in models:
        spec += [
            f"  {name}:",
            f"    source: models@master:/{name}.onnx",
            "    batching: never",
            f"  {name}_b:",
            f"    source: models@master:/{name}.onnx",
            "    batching: always",
        ]
    (work / "tusk-models.yaml").write_text("\n".join(spec) + "\n")
    port = free_port()
    log = work / "tusk-inference.log"
    child = stack.enter_context(
        process(
            [sys.executable, "-m", "tusk_inference"],
            {
                **env,
                "TUSK_REPO_URL": repo_url,
                "TUSK_INFERENCE_PORT": str(port),
                "TUSK_MODELS_FILE": str(work / "tusk-models.yaml"),
                "TUSK_INFERENCE_ORT_THREADS": str(ort_threads),
                "TUSK_INFERENCE_MAX_BATCH_SIZE": str(BATCH_ROWS),
                "TUSK_INFERENCE_MAX_BATCH_DELAY_MS": str(BATCH_WAIT_S * 1000),
            },
            log,
        )
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/v2/health/ready", child, log, timeout=180)
    return Server("tusk", url, child.pid, batching=True)


def start_kserve(stack: ExitStack, work: Path, models: dict[str, Path], ort_threads: int) -> Server:
    port = free_port()
    command = [
        str(install.python("kserve")),
        str(PEERS_DIR / "kserve_server.py"),
        "--http-port",
        str(port),
        "--grpc-port",
        str(free_port()),
        "--threads",
        str(ort_threads),
    ]
    for name, path in models.items():
        command += ["--model", f"{name}={path}"]
    log = work / "kserve.log"
    child = stack.enter_context(process(command, dict(os.environ), log))
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/v2/health/ready", child, log, timeout=180)
    return Server("kserve", url, child.pid, batching=False)


def start_mlserver(
    stack: ExitStack, work: Path, models: dict[str, Path], ort_threads: int
) -> Server:
    root = work / "mlserver"
    port = free_port()
    settings = {
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        # 0: inference in the server's own process, like tusk's and KServe's single worker;
        # MLServer's default (1) adds a separate inference process behind a queue.
        "parallel_workers": 0,
        "debug": False,
    }
    root.mkdir()
    (root / "settings.json").write_text(json.dumps(settings))
    for name, path in models.items():
        for served, batched in ((name, False), (f"{name}_b", True)):
            folder = root / served
            folder.mkdir()
            model: dict[str, Any] = {
                "name": served,
                "implementation": "mlserver_onnx.OnnxRuntime",
                "parameters": {"uri": str(path), "extra": {"threads": ort_threads}},
            }
            if batched:
                model |= {"max_batch_size": BATCH_ROWS, "max_batch_time": BATCH_WAIT_S}
            (folder / "model-settings.json").write_text(json.dumps(model))
    env = {**os.environ, "PYTHONPATH": str(PEERS_DIR)}
    log = work / "mlserver.log"
    child = stack.enter_context(
        process([str(install.executable("mlserver", "mlserver")), "start", str(root)], env, log)
    )
    url = f"http://127.0.0.1:{port}"
    for served in [n for name in models for n in (name, f"{name}_b")]:
        wait_http(f"{url}/v2/models/{served}/ready", child, log, timeout=180)
    return Server("mlserver", url, child.pid, batching=True)


# --- measurements ------------------------------------------------------------------------------


def answer(url: str, model: str, body: Path) -> list[float]:
    response = httpx.post(
        f"{url}/v2/models/{model}/infer",
        content=body.read_bytes(),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    if response.status_code != 200:
        raise RuntimeError(f"{url} {model}: {response.status_code} {response.text[:500]}")
    data = response.json()["outputs"][0]["data"]
    return [float(v) for v in np.asarray(data, dtype=np.float64).ravel()]


def check_same_answers(servers: list[Server], bodies: dict[str, Path]) -> dict[str, Any]:
    """Every server must give the same numbers for the same request, or the race is void."""
    seen: dict[str, Any] = {}
    for model, body in bodies.items():
        for variant in (model, f"{model}_b"):
            answers = {
                s.name: answer(s.url, variant, body)
                for s in servers
                if s.batching or variant == model
            }
            reference = answers["tusk"]
            for name, values in answers.items():
                if not np.allclose(values, reference, rtol=1e-4, atol=1e-4):
                    raise RuntimeError(
                        f"{name} answers {variant} with {values[:4]}, tusk with {reference[:4]}"
                    )
            seen[variant] = reference[:4]
    return seen


async def measured(server: Server, model: str, body: Path, *args: str) -> dict[str, Any]:
    before = server.cpu()
    result = await aloadgen(f"{server.url}/v2/models/{model}/infer", *args, body=body)
    result["server_cpu_us_per_request"] = round(
        (server.cpu() - before) * 1e6 / max(result["requests"], 1), 1
    )
    if result["ok"] < result["requests"]:
        say(f"    {server.name} {model}: {result['requests'] - result['ok']} failed: "
            f"{result.get('failures', [])[:2]}")
    return result


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


async def bench_load(
    plan: Plan, servers: list[Server], bodies: dict[str, Path]
) -> tuple[list[Row], dict[str, Any]]:
    """Closed-loop maxima first, then fixed rates, each workload on each server in turn."""
    samples: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    variants = [v for model in bodies for v in (model, f"{model}_b")]
    for server in servers:  # every model warm on every server before anything is timed
        for variant in variants:
            if server.batching or not variant.endswith("_b"):
                base = variant.removesuffix("_b")
                await aloadgen(
                    f"{server.url}/v2/models/{variant}/infer",
                    "--duration", "1", "--warmup", "0", "--concurrency", "8",
                    body=bodies[base],
                )
    for round_no in range(plan.rounds):
        order = servers[round_no % len(servers):] + servers[: round_no % len(servers)]
        say(f"  round {round_no + 1}/{plan.rounds}: {', '.join(s.name for s in order)}")
        for kind in ("closed", "rate"):
            for index in range(2):
                for variant in variants:
                    base = variant.removesuffix("_b")
                    body = bodies[base]
                    level = (
                        plan.concurrencies if kind == "closed" else plan.rates_for(base)
                    )[index]
                    for server in order:
                        if variant.endswith("_b") and not server.batching:
                            continue
                        key = (variant, f"{kind}{level}", server.name)
                        if kind == "closed":
                            args = ("--concurrency", str(level))
                        else:
                            reached = max(
                                (
                                    r["rps"]
                                    for c in plan.concurrencies
                                    for r in samples.get((variant, f"closed{c}", server.name), [])
                                ),
                                default=0.0,
                            )
                            if reached < level:
                                samples.setdefault(key, []).append(
                                    {"saturated": True, "max_rps": reached}
                                )
                                continue
                            args = ("--rate", str(level))
                        result = await measured(
                            server, variant, body, "--duration", str(plan.seconds),
                            "--warmup", "0.5", *args,
                        )
                        samples.setdefault(key, []).append(result)
                        shown = (
                            f"{result['rps']:.0f} req/s"
                            if kind == "closed"
                            else f"p50 {result.get('p50_ms')} p99 {result.get('p99_ms')} ms"
                        )
                        say(f"    {variant} {kind} {level} {server.name}: {shown}, "
                            f"{result['server_cpu_us_per_request']} us CPU/req")
    rows: list[Row] = []
    names = [s.name for s in servers]
    for variant in variants:
        for c in plan.concurrencies:
            rows.append(_row(f"{variant}: max req/s, c={c}", "req/s", variant, f"closed{c}",
                             "rps", names, samples))
        rows.append(_row(f"{variant}: server CPU per request, c={plan.concurrencies[0]}", "us",
                         variant, f"closed{plan.concurrencies[0]}", "server_cpu_us_per_request",
                         names, samples))
        for rate in plan.rates_for(variant.removesuffix("_b")):
            for q in ("p50", "p99"):
                rows.append(_row(f"{variant}: {q} at {rate:,} req/s", "ms", variant,
                                 f"rate{rate}", f"{q}_ms", names, samples))
    flat = {"|".join(k): v for k, v in samples.items()}
    return rows, flat


def _row(
    title: str,
    unit: str,
    variant: str,
    workload: str,
    key: str,
    names: list[str],
    samples: dict[tuple[str, str, str], list[dict[str, Any]]],
) -> Row:
    row = Row(title, unit)
    saturated = []
    for name in names:
        runs = samples.get((variant, workload, name))
        if not runs:
            row.values[name] = None
            continue
        good = [r[key] for r in runs if not r.get("saturated") and key in r]
        row.samples[name] = [r.get(key) for r in runs]
        if len(good) < len(runs):
            saturated.append(f"{name} saturated (max {max(r.get('max_rps', 0) for r in runs):.0f}"
                             " req/s)")
        row.values[name] = median(good) if good and len(good) == len(runs) else None
    row.note = "; ".join(saturated)
    return row


def triton(servers: list[Server], bodies: dict[str, Path], seconds: float) -> list[Row]:
    """Triton's stock HTTP client against each server: that it works unmodified, and its
    sequential round trip."""
    rows = []
    for model, body in bodies.items():
        row = Row(f"{model}: tritonclient (HTTP) sequential req/s", "req/s")
        for server in servers:
            done = subprocess.run(
                [
                    str(install.python("tritonclient")),
                    str(PEERS_DIR / "triton_client.py"),
                    "--url",
                    server.url.removeprefix("http://"),
                    "--model",
                    model,
                    "--body",
                    str(body),
                    "--seconds",
                    str(seconds),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                row.values[server.name] = None
                lines = done.stderr.strip().splitlines() or ["no output"]
                row.note += f"{server.name} refused it: {lines[-1]} "
                continue
            result = json.loads(done.stdout)
            row.values[server.name] = result["rps"]
            row.samples[server.name] = [result]
        rows.append(row)
    return rows


# --- the run -----------------------------------------------------------------------------------


def run(plan: Plan, work: Path, ort_threads: int) -> dict[str, Any]:
    say("installing the peers (cached after the first time) ...")
    for name in ("kserve", "mlserver", "tritonclient"):
        install.ensure(name)
    versions = {
        "onnxruntime": ort.__version__,
        "kserve": install.version("kserve", "kserve"),
        "mlserver": install.version("mlserver", "mlserver"),
        "tritonclient": install.version("tritonclient", "tritonclient"),
        "onnxruntime (kserve venv)": install.version("kserve", "onnxruntime"),
        "onnxruntime (mlserver venv)": install.version("mlserver", "onnxruntime"),
    }
    env = environment(**versions)
    say("training the credit model (the example's scripts) ...")
    credit, width = train_credit(work)
    slow = test_models.slow(width=1024, depth=16)
    models = {"credit": work / "credit.onnx", "slow": work / "slow.onnx"}
    models["credit"].write_bytes(credit)
    models["slow"].write_bytes(slow)
    rng = np.random.default_rng(5)
    credit_row = rng.normal(size=width).round(4).astype(np.float32)
    slow_row = rng.normal(size=1024).astype(np.float32)
    bodies = {"credit": work / "credit.json", "slow": work / "slow.json"}
    request_body(bodies["credit"], "features", credit_row)
    request_body(bodies["slow"], "x", slow_row)
    raw = {
        "credit": raw_onnxruntime(credit, {"features": credit_row[None, :]}, 1.0),
        "slow": raw_onnxruntime(slow, {"x": slow_row[None, :]}, 1.0),
    }
    say(f"onnxruntime in-process, one row: credit {raw['credit']['p50_ms'] * 1000:.0f} us, "
        f"slow {raw['slow']['p50_ms']:.2f} ms")
    if raw["slow"]["p50_ms"] < 1.0:
        raise RuntimeError(f"the slow model runs in {raw['slow']['p50_ms']:.2f} ms, under 1 ms")
    out: dict[str, Any] = {"plan": asdict(plan), "raw_onnxruntime": raw}
    with ExitStack() as stack:
        say("starting tusk (repo + inference), KServe and MLServer ...")
        servers = [
            start_tusk(stack, work, models, ort_threads),
            start_kserve(stack, work, models, ort_threads),
            start_mlserver(stack, work, models, ort_threads),
        ]
        rss_idle = {s.name: s.rss_mib() for s in servers}
        out["answers"] = check_same_answers(servers, bodies)
        say("every server gives the same answers; measuring ...")
        rows, samples = asyncio.run(bench_load(plan, servers, bodies))
        memory = Row("resident memory, models loaded, idle", "MiB",
                     {k: round(v, 1) for k, v in rss_idle.items()})
        memory_after = Row("resident memory after the load", "MiB",
                           {s.name: round(s.rss_mib(), 1) for s in servers})
        rows += [memory, memory_after]
        say("tritonclient against each ...")
        rows += triton(servers, bodies, plan.triton_seconds)
        out["samples"] = samples
    env["load_average_after"] = os.getloadavg()
    out["environment"] = env
    out["rows"] = [asdict(r) | {"ratio": r.ratio(), "tusk_ahead": r.tusk_ahead()} for r in rows]
    out["_rows"] = rows
    return out


def print_rows(rows: list[Row], names: list[str], env: dict[str, Any], title: str) -> None:
    """One table: workload, tusk, each peer, tusk / best peer (and whether tusk is ahead)."""
    header = ["workload", *names, "tusk / best peer", "tusk ahead"]
    table = [header]
    for row in rows:
        cells = [row.workload]
        for name in names:
            value = row.values.get(name)
            digits = 3 if value is not None and value < 10 else 0
            cells.append("-" if value is None else f"{value:,.{digits}f} {row.unit}")
        ratio = row.ratio()
        cells.append("" if ratio is None else f"{ratio:.3g}")
        cells.append({True: "yes", False: "NO", None: ""}[row.tusk_ahead()])
        table.append(cells)
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    print(title)
    for i, cells in enumerate(table):
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    for row in rows:
        if row.note:
            print(f"* {row.workload}: {row.note}")
    versions = {k: v for k, v in env.items() if k not in {
        "load_average_before", "load_average_after", "nproc", "memory_gib", "cpu", "python"}}
    print(
        f"\nmachine: {env['nproc']} cores ({env['cpu']}), {env['memory_gib']} GiB, load "
        f"{env['load_average_before'][0]:.2f} before / {env['load_average_after'][0]:.2f} after; "
        f"Python {env['python']}; " + ", ".join(f"{k} {v}" for k, v in versions.items())
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Full size: 3 rounds of 5 s per workload and server (about 15 minutes).",
    )
    parser.add_argument("--quick", action="store_true", help="one round of 2 s runs")
    parser.add_argument("--rounds", type=int, help="rounds (default: 3, or 1 with --quick)")
    parser.add_argument("--seconds", type=float, help="seconds per run (default 5, quick 2)")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument(
        "--json",
        type=Path,
        default=Path(tempfile.gettempdir()) / "tusk-peers-inference.json",
        help="where to write every sample (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    plan = Plan.quick() if args.quick else Plan.full()
    if args.rounds or args.seconds:
        plan = Plan(
            seconds=args.seconds or plan.seconds,
            rounds=args.rounds or plan.rounds,
            triton_seconds=plan.triton_seconds,
        )
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tusk-peers-inference-") as work:
        out = run(plan, Path(work), args.threads)
    rows = out.pop("_rows")
    out["total_seconds"] = round(time.monotonic() - started, 1)
    print()
    print_rows(rows, ["tusk", "kserve", "mlserver"], out["environment"],
               "tusk's inference service vs KServe and MLServer (median of rounds)")
    args.json.write_text(json.dumps(out, indent=2, default=str))
    say(f"done in {out['total_seconds']:.0f} s; every sample in {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
