"""``tusk-worker``: run one shard of a job, then exit with a status the runner understands.

    tusk-worker --output-repo REPO --meta-commit COMMIT --job JOB --shard N

Settings come from ``TUSK_*`` environment variables (see :mod:`tusk.worker.config`). Progress
is logged to stderr; results go to the repo service. Exit status: 0 every datum succeeded,
1 some datums failed, 2 the worker itself failed, 128 + N when stopped by signal N.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

import structlog

from tusk.client import RepoClient
from tusk.errors import TuskError
from tusk.logging import configure_logging
from tusk.worker.config import WorkerSettings, load_settings
from tusk.worker.protocol import EXIT_DATUMS_FAILED, EXIT_SUCCESS, EXIT_WORKER_ERROR
from tusk.worker.runtime import ShardOutcome, load_shard_spec, run_shard
from tusk.worker.transfer import RetryPolicy

logger = structlog.get_logger("tusk.worker")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tusk-worker",
        description="Run one shard of a pipeline job: stage each datum's inputs, run the "
        "pipeline's command, upload its outputs, record results and logs in the meta commit.",
        epilog="Environment: TUSK_REPO_URL, TUSK_TOKEN, TUSK_PFS_ROOT, TUSK_WORKER_SCRATCH, "
        "TUSK_WORKER_KILL_GRACE, TUSK_WORKER_REPO_ATTEMPTS, TUSK_LOG_LEVEL, TUSK_LOG_JSON. "
        "Exit status: 0 all datums succeeded, 1 some failed, 2 worker error, 128+N stopped by "
        "signal N.",
    )
    parser.add_argument("--output-repo", required=True, help="The pipeline's output repo.")
    parser.add_argument(
        "--meta-commit",
        required=True,
        help="The job's open commit on the output repo's meta branch, which holds the shard spec.",
    )
    parser.add_argument("--job", required=True, help="The job id.")
    parser.add_argument("--shard", required=True, type=int, help="The shard number.")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(run(argv))


def run(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)  # a usage error exits 2, as any worker error does
    try:
        settings = load_settings()
    except TuskError as e:
        sys.stderr.write(f"tusk-worker: {e.message}\n")
        return EXIT_WORKER_ERROR
    configure_logging(settings.log_level, json=settings.log_json)
    return asyncio.run(_serve(args, settings))


async def _serve(args: argparse.Namespace, settings: WorkerSettings) -> int:
    log = logger.bind(job=args.job, shard=args.shard)
    work = asyncio.create_task(_work(args, settings))
    received: list[signal.Signals] = []

    def stop(sig: signal.Signals) -> None:
        if not received:
            log.warning("stopping: the running datum is abandoned", signal=sig.name)
        received.append(sig)
        work.cancel()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop, sig)
    try:
        outcome = await work
    except asyncio.CancelledError:
        if not received:
            raise
        return 128 + received[0]
    except TuskError as e:
        log.error("worker failed", error=e.message, code=e.code)
        return EXIT_WORKER_ERROR
    except Exception:
        log.exception("worker failed")
        return EXIT_WORKER_ERROR
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return EXIT_SUCCESS if outcome.ok else EXIT_DATUMS_FAILED


async def _work(args: argparse.Namespace, settings: WorkerSettings) -> ShardOutcome:
    async with RepoClient(settings.repo_url, settings.token, timeout=settings.timeout) as client:
        retry = RetryPolicy(attempts=settings.worker_repo_attempts)
        spec = await load_shard_spec(
            client, args.output_repo, args.meta_commit, args.job, args.shard, retry=retry
        )
        return await run_shard(
            client,
            spec,
            pfs_root=settings.pfs_root,
            scratch=settings.worker_scratch,
            retry=retry,
            kill_grace=settings.worker_kill_grace,
        )
