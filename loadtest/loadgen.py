"""An HTTP/1.1 load generator that can drive thousands of requests a second from one core.

    python -m loadtest.loadgen --url http://127.0.0.1:8080/v2/health/live --duration 5 \
        --concurrency 16                 # closed loop: as fast as the server answers
    python -m loadtest.loadgen --url … --rate 1000 --duration 10 --body-file req.json
                                         # open loop: a fixed rate, whatever the latency

Raw asyncio protocols on uvloop with keep-alive connections, no HTTP library: httpx tops out
around 2,000 requests a second on one core, which would measure the client, not the server.
In the open loop a request's latency counts from when it was *due*, not from when it was sent,
so a stalled server cannot hide behind a stalled client (no coordinated omission).

It prints one JSON object: requests, errors (by status), req/s, latency percentiles in ms,
and with ``--versions`` how many answers each ``model_version`` gave.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

VERSION_MARK = b'"model_version":"'


@dataclass
class Results:
    latencies: list[float] = field(default_factory=list)
    from_sent: list[float] = field(default_factory=list)  # open loop: from the actual send
    statuses: Counter[int] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)


class Connection(asyncio.Protocol):
    """One keep-alive connection: one request in flight at a time."""

    def __init__(self, on_response: Callable[[int, bytes], None], on_lost: Callable[[str], None]):
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._on_response = on_response
        self._on_lost = on_lost
        self._expect: int | None = None  # body length once the head is parsed
        self._status = 0
        self._head_end = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_lost(repr(exc) if exc else "closed by the server")

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while True:
            if self._expect is None:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(buffer[:end]).lower()
                self._status = int(head[9:12])
                start = head.find(b"content-length:")
                if start < 0:
                    self._on_lost("response without content-length")
                    return
                stop = head.find(b"\r\n", start)
                self._expect = int(head[start + 15 : stop if stop >= 0 else None])
                self._head_end = end + 4
            total = self._head_end + self._expect
            if len(buffer) < total:
                return
            body = bytes(buffer[self._head_end : total])
            del buffer[:total]
            self._expect = None
            self._on_response(self._status, body)


class Generator:
    def __init__(
        self, url: str, method: str, body: bytes, headers: dict[str, str], track_versions: bool
    ) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if body or method != "GET":
            lines.append(f"Content-Length: {len(body)}")
        self.request = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        self.track_versions = track_versions
        self.results = Results()

    async def connect(self) -> tuple[Connection, asyncio.Queue[tuple[int, bytes] | str]]:
        loop = asyncio.get_running_loop()
        answers: asyncio.Queue[tuple[int, bytes] | str] = asyncio.Queue()
        _, protocol = await loop.create_connection(
            lambda: Connection(
                lambda status, body: answers.put_nowait((status, body)),
                answers.put_nowait,
            ),
            self.host,
            self.port,
        )
        return protocol, answers

    def record(
        self, due: float, answer: tuple[int, bytes] | str, sent: float | None = None
    ) -> None:
        now = time.perf_counter()
        results = self.results
        if sent is not None and not isinstance(answer, str):
            results.from_sent.append(now - sent)
        if isinstance(answer, str):
            results.statuses[0] += 1
            results.failures.append(answer)
            return
        status, body = answer
        results.statuses[status] += 1
        results.latencies.append(now - due)
        if status != 200 and len(results.failures) < 20:
            results.failures.append(f"{status}: {body[:300]!r}")
        if self.track_versions and status == 200:
            at = body.find(VERSION_MARK)
            if at >= 0:
                start = at + len(VERSION_MARK)
                results.versions[body[start : body.find(b'"', start)].decode()] += 1

    async def closed_loop(self, concurrency: int, duration: float) -> float:
        """``concurrency`` connections, each sending its next request when answered."""
        connections = [await self.connect() for _ in range(concurrency)]
        deadline = time.perf_counter() + duration

        async def worker(
            connection: Connection, answers: asyncio.Queue[tuple[int, bytes] | str]
        ) -> None:
            assert connection.transport is not None
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                connection.transport.write(self.request)
                answer = await answers.get()
                self.record(sent, answer)
                if isinstance(answer, str):
                    return

        started = time.perf_counter()
        await asyncio.gather(*(worker(c, q) for c, q in connections))
        elapsed = time.perf_counter() - started
        for connection, _ in connections:
            if connection.transport is not None:
                connection.transport.close()
        return elapsed

    async def open_loop(self, rate: float, duration: float, pool: int) -> float:
        """Requests due every 1/rate s; each goes out on an idle connection (more are opened
        up to ``pool``), and its latency counts from when it was due."""
        idle: asyncio.Queue[tuple[Connection, asyncio.Queue[tuple[int, bytes] | str]]] = (
            asyncio.Queue()
        )
        opened = 0
        for _ in range(min(pool, 32)):
            idle.put_nowait(await self.connect())
            opened += 1
        total = int(rate * duration)
        in_flight: set[asyncio.Task[None]] = set()

        async def one(due: float) -> None:
            nonlocal opened
            if idle.empty() and opened < pool:
                opened += 1
                idle.put_nowait(await self.connect())
            connection, answers = await idle.get()
            assert connection.transport is not None
            sent = time.perf_counter()
            connection.transport.write(self.request)
            answer = await answers.get()
            self.record(due, answer, sent)
            if not isinstance(answer, str):
                idle.put_nowait((connection, answers))

        started = time.perf_counter()
        interval = 1.0 / rate
        for i in range(total):
            due = started + i * interval
            # The loop's timers are good to about a millisecond; a request that goes out late
            # is still timed from when it was due. (Spinning until the exact time was tried:
            # a generator that never sleeps gets preempted, and the tail grows.)
            delay = due - time.perf_counter()
            if delay > 0.0005:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(due))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        await asyncio.gather(*in_flight)
        return time.perf_counter() - started


CANNED = (
    b'HTTP/1.1 200 OK\r\ncontent-length: 13\r\ncontent-type: application/json\r\n\r\n{"live":true}'
)


class CannedServer(asyncio.Protocol):
    """The cheapest possible HTTP/1.1 server: one canned answer per request. Driving it
    measures the load generator's own ceiling."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = bytes(self.buffer[:end]).lower()
            at = head.find(b"content-length:")
            length = 0
            if at >= 0:
                stop = head.find(b"\r\n", at)
                length = int(head[at + 15 : stop if stop >= 0 else None])
            if len(self.buffer) < end + 4 + length:
                return
            del self.buffer[: end + 4 + length]
            self.transport.write(CANNED)  # type: ignore[attr-defined]


async def serve_canned(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(CannedServer, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def summary(results: Results, elapsed: float) -> dict[str, object]:
    latencies = np.array(results.latencies) * 1000
    ok = results.statuses.get(200, 0)
    report: dict[str, object] = {
        "requests": sum(results.statuses.values()),
        "ok": ok,
        "errors": {str(k): v for k, v in results.statuses.items() if k != 200},
        "seconds": round(elapsed, 3),
        "rps": round(ok / elapsed, 1) if elapsed else 0.0,
    }
    if len(latencies):
        for name, q in (("p50", 50), ("p90", 90), ("p99", 99), ("p999", 99.9)):
            report[f"{name}_ms"] = round(float(np.percentile(latencies, q)), 3)
        report["max_ms"] = round(float(latencies.max()), 3)
        report["mean_ms"] = round(float(latencies.mean()), 3)
    if results.from_sent:
        sent = np.array(results.from_sent) * 1000
        report["from_sent"] = {
            f"{name}_ms": round(float(np.percentile(sent, q)), 3)
            for name, q in (("p50", 50), ("p99", 99), ("p999", 99.9))
        }
    if results.versions:
        report["versions"] = dict(results.versions)
    if results.failures:
        report["failures"] = results.failures[:10]
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url")
    parser.add_argument(
        "--serve",
        type=int,
        metavar="PORT",
        help="instead: serve canned answers on PORT (the generator's ceiling)",
    )
    parser.add_argument("--method", default=None, help="default: POST with a body, else GET")
    parser.add_argument("--body-file", type=Path)
    parser.add_argument("--header", action="append", default=[], metavar="NAME:VALUE")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds not counted")
    parser.add_argument("--concurrency", type=int, default=16, help="closed loop connections")
    parser.add_argument("--rate", type=float, help="open loop: requests per second")
    parser.add_argument("--pool", type=int, default=256, help="open loop: most connections")
    parser.add_argument("--versions", action="store_true", help="count model_version answers")
    args = parser.parse_args(argv)
    if args.serve is None and not args.url:
        parser.error("--url is needed")

    body = args.body_file.read_bytes() if args.body_file else b""
    headers = {"Content-Type": "application/json"} if body else {}
    for item in args.header:
        name, _, value = item.partition(":")
        headers[name.strip()] = value.strip()
    method = args.method or ("POST" if body else "GET")

    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        pass

    if args.serve is not None:
        asyncio.run(serve_canned(args.serve))
        return 0

    async def run() -> dict[str, object]:
        if args.warmup > 0:
            warm = Generator(args.url, method, body, headers, False)
            if args.rate:
                await warm.open_loop(args.rate, args.warmup, args.pool)
            else:
                await warm.closed_loop(args.concurrency, args.warmup)
        generator = Generator(args.url, method, body, headers, args.versions)
        if args.rate:
            elapsed = await generator.open_loop(args.rate, args.duration, args.pool)
        else:
            elapsed = await generator.closed_loop(args.concurrency, args.duration)
        return summary(generator.results, elapsed)

    report = asyncio.run(run())
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
