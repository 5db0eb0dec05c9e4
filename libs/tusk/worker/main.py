"""``tusk-worker``: run one shard of a job, then exit with a status the runner understands.

    tusk-worker --output-repo REPO --meta-commit COMMIT --job JOB --shard N
    tusk-worker --standby
    tusk-worker --listen

Settings come from ``TUSK_*`` environment variables (see :mod:`tusk.worker.config`). Progress
is logged to stderr; results go to the repo service. Exit status: 0 every datum succeeded,
1 some datums failed, 2 the worker itself failed, 128 + N when stopped by signal N.

``--standby`` is how the local runner keeps workers warm: the process starts (the interpreter
and its imports take a quarter of a second) before there is a shard for it, then waits for one
:class:`Assignment`, a line of JSON on stdin. It takes the assignment's environment, sends its
output to the assignment's log file, runs the shard as if started with the assignment's
arguments, and writes its exit status to the assignment's exit file. End of input before an
assignment (the runner closed the pipe, or died) makes it exit quietly.

``--listen`` is the same for a warm pod of the Kubernetes runner: the assignment comes as an
HTTP request on ``TUSK_WORKER_LISTEN_HOST:TUSK_WORKER_LISTEN_PORT`` carrying the pod's
``TUSK_WORKER_ASSIGNMENT_KEY`` (see :mod:`tusk.worker.handover`); the worker's output stays
the pod's log and its exit status the pod's. It waits until the pod is deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog
from pydantic import ValidationError

from tusk.client import RepoClient
from tusk.errors import TuskError
from tusk.logging import configure_logging
from tusk.worker.config import WorkerSettings, load_settings
from tusk.worker.handover import AssignmentListener
from tusk.worker.protocol import (
    EXIT_DATUMS_FAILED,
    EXIT_SUCCESS,
    EXIT_WORKER_ERROR,
    Assignment,
    ShardSpec,
)
from tusk.worker.runtime import (
    ShardOutcome,
    load_shard_spec,
    parse_shard_spec,
    run_shard,
    successful_datums,
)
from tusk.worker.sandbox import make_sandbox, probe_ahead
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
        "signal N. `tusk-worker --standby` (alone) starts warm and waits for its shard as a "
        "line of JSON on stdin: how the local runner starts shards without start-up delay. "
        "`tusk-worker --listen` (alone) does the same in a warm pod, taking its shard as an "
        "HTTP request on TUSK_WORKER_LISTEN_HOST:TUSK_WORKER_LISTEN_PORT that carries "
        "TUSK_WORKER_ASSIGNMENT_KEY. "
        "`tusk-worker next-datum` is for pipeline commands with transform.datum_batching: it "
        "asks the worker for the next datum (see `tusk-worker next-datum --help`).",
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
    args = sys.argv[1:] if argv is None else list(argv)
    if args == ["--standby"]:
        sys.exit(standby())
    sys.exit(listen() if args == ["--listen"] else run(args))


def standby() -> int:
    """Get warm, wait for an :class:`Assignment` on stdin, run it, record its exit status."""
    settings = _configured("tusk-worker --standby")
    if settings is None:
        return EXIT_WORKER_ERROR
    return asyncio.run(_standby(settings))


async def _standby(settings: WorkerSettings) -> int:
    async with _repo_client(settings) as client:
        # The first request loads what HTTP needs on first use (a tenth of a second of
        # imports) and opens the connection the shard's requests will use.
        await client.healthy()
        await asyncio.to_thread(probe_ahead, settings.worker_sandbox, os.environ)
        line = await asyncio.to_thread(sys.stdin.buffer.readline)
        if not line.strip():
            return 0  # no shard came: the runner let this worker go
        try:
            assignment = Assignment.model_validate_json(line)
        except ValidationError as e:
            sys.stderr.write(f"tusk-worker --standby: not an assignment: {e}\n")
            return EXIT_WORKER_ERROR
        if assignment.log_file is not None:
            _take_over_output(assignment.log_file)
        code = EXIT_WORKER_ERROR
        try:
            code = await _run_assigned(assignment, client, settings)
        finally:
            if assignment.exit_file is not None:
                # Written via a temporary file, so a reader never sees half a number.
                partial = assignment.exit_file.with_name(assignment.exit_file.name + ".tmp")
                partial.write_text(f"{code}\n")
                partial.replace(assignment.exit_file)
        return code


def listen() -> int:
    """Get warm, take one :class:`Assignment` over HTTP, run it; its exit status."""
    settings = _configured("tusk-worker --listen")
    if settings is None:
        return EXIT_WORKER_ERROR
    if settings.worker_listen_port is None or not settings.worker_assignment_key:
        sys.stderr.write(
            "tusk-worker --listen: TUSK_WORKER_LISTEN_PORT and TUSK_WORKER_ASSIGNMENT_KEY "
            "must be set\n"
        )
        return EXIT_WORKER_ERROR
    return asyncio.run(_listen(settings))


async def _listen(settings: WorkerSettings) -> int:
    assert settings.worker_listen_port is not None
    assert settings.worker_assignment_key
    async with _repo_client(settings) as client:
        await client.healthy()
        await asyncio.to_thread(probe_ahead, settings.worker_sandbox, os.environ)
        listener = AssignmentListener(settings.worker_assignment_key)
        # Listening means warm: the runner hands a shard only to a worker that answers.
        await listener.start(settings.worker_listen_host, settings.worker_listen_port)
        logger.info(
            "warm; waiting for an assignment",
            host=settings.worker_listen_host,
            port=settings.worker_listen_port,
        )
        assignment = await listener.wait()
        return await _run_assigned(assignment, client, settings)


def _take_over_output(log_file: Path) -> None:
    """From now on stdout and stderr go to the shard's log; stdin is done with."""
    with log_file.open("ab") as output:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
            os.dup2(output.fileno(), stream.fileno())
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, sys.stdin.fileno())
    os.close(devnull)


async def _run_assigned(assignment: Assignment, client: RepoClient, warm: WorkerSettings) -> int:
    """Run the assigned shard, with the warm client unless the assignment changed its settings."""
    os.environ.update(assignment.env)
    try:
        args = _parser().parse_args(assignment.argv)
    except SystemExit as e:  # a usage error (argparse has said what it was)
        return e.code if isinstance(e.code, int) else EXIT_WORKER_ERROR
    settings = _configured("tusk-worker")
    if settings is None:
        return EXIT_WORKER_ERROR
    same = (settings.repo_url, settings.token, settings.timeout) == (
        warm.repo_url,
        warm.token,
        warm.timeout,
    )
    return await _serve(args, settings, client if same else None, assignment)


def run(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)  # a usage error exits 2, as any worker error does
    settings = _configured("tusk-worker")
    if settings is None:
        return EXIT_WORKER_ERROR
    return asyncio.run(_serve(args, settings))


def _configured(prog: str) -> WorkerSettings | None:
    """The settings from the environment, logging configured by them; None once what is wrong
    with them has been written to stderr."""
    try:
        settings = load_settings()
    except TuskError as e:
        sys.stderr.write(f"{prog}: {e.message}\n")
        return None
    # The pipeline's command inherits this environment: the credentials stay with the worker.
    os.environ.pop("TUSK_TOKEN", None)
    os.environ.pop("TUSK_WORKER_ASSIGNMENT_KEY", None)
    configure_logging(settings.log_level, json=settings.log_json)
    return settings


async def _serve(
    args: argparse.Namespace,
    settings: WorkerSettings,
    client: RepoClient | None = None,
    assignment: Assignment | None = None,
) -> int:
    """Run the shard, with ``client`` if given (else a new one); the exit status."""
    log = logger.bind(job=args.job, shard=args.shard)
    work = asyncio.create_task(_work(args, settings, client, assignment))
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


async def _work(
    args: argparse.Namespace,
    settings: WorkerSettings,
    client: RepoClient | None,
    assignment: Assignment | None,
) -> ShardOutcome:
    async with contextlib.AsyncExitStack() as stack:
        if client is None:
            client = await stack.enter_async_context(_repo_client(settings))
        retry = RetryPolicy(attempts=settings.worker_repo_attempts)
        where = (args.output_repo, args.meta_commit, args.job)

        async def spec() -> ShardSpec:
            if assignment is not None and assignment.shard_spec is not None:
                return parse_shard_spec(assignment.shard_spec, *where, args.shard)
            return await load_shard_spec(client, *where, args.shard, retry=retry)

        async def done() -> set[str]:
            if assignment is not None and assignment.fresh:
                return set()
            return await successful_datums(client, *where, retry=retry)

        sandbox = asyncio.create_task(
            asyncio.to_thread(
                make_sandbox,
                settings.worker_sandbox,
                os.environ,
                Path.cwd(),
                settings.worker_image_root,
            )
        )
        # Both need only the arguments: one round trip on the way to the first datum, or none.
        shard, already_done = await asyncio.gather(spec(), done())
        return await run_shard(
            client,
            shard,
            pfs_root=settings.pfs_root,
            scratch=settings.worker_scratch,
            retry=retry,
            kill_grace=settings.worker_kill_grace,
            already_done=already_done,
            sandbox=await sandbox,
            secrets_dir=settings.worker_secrets_dir,
        )


def _repo_client(settings: WorkerSettings) -> RepoClient:
    return RepoClient(settings.repo_url, settings.token, timeout=settings.timeout)
