"""The watching process of ``loadtest.bench_kube``: a connected ``KubernetesRunner`` and
nothing else (no test or benchmark modules imported), answering its parent line by line.

    python -m loadtest.kube_watcher KUBECONFIG NAMESPACE

Prints ``rss <bytes>`` once its watch is synced; then reads ``count N`` (answers ``rss <bytes>
<seconds until the cache held N pods>``), ``probe <pod>`` (answers ``ready``, then ``seen
<time_ns>`` when ``runner.status()`` stops reporting the pod running, polling every
millisecond) and ``quit``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import psutil

from tusk_scheduler.runners.base import ShardHandle
from tusk_scheduler.runners.kubernetes import KubernetesRunner, PodTemplate


def rss() -> int:
    return int(psutil.Process().memory_info().rss)


async def watcher(kubeconfig: Path, ns: str) -> None:
    """The watching process: a connected runner, answering the parent line by line."""
    runner = KubernetesRunner(
        PodTemplate(repo_url="http://repo.tusk:8081"), kubeconfig=kubeconfig, namespace=ns
    )
    await runner.connect()
    await runner._wait_synced()
    await asyncio.sleep(0.5)
    print("rss", rss(), flush=True)

    async def line() -> list[str]:
        return (await asyncio.to_thread(sys.stdin.readline)).split()

    while command := await line():
        if command[0] == "count":
            want, started = int(command[1]), time.monotonic()
            while len(runner.pod_watch.pods) < want:
                await asyncio.sleep(0.01)
            synced = time.monotonic() - started
            await asyncio.sleep(1.0)  # let the allocator settle
            print("rss", rss(), synced, flush=True)
        elif command[0] == "probe":
            handle = ShardHandle(job="bench", shard=0, attempt=0, ref=command[1])
            print("ready", flush=True)
            while (await runner.status(handle)).state == "running":
                await asyncio.sleep(0.001)
            print("seen", time.time_ns(), flush=True)
        elif command[0] == "quit":
            break
    print("rss", rss(), flush=True)
    await runner.close()


if __name__ == "__main__":
    asyncio.run(watcher(Path(sys.argv[1]), sys.argv[2]))
