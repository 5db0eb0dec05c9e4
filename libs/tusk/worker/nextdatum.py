"""The user code's side of datum batching (``transform.datum_batching: true``), Pachyderm's
``pachctl next datum``: one long-lived process handles many datums, so what it loads once (a
model, a connection) serves them all.

The process asks for each datum in turn. A call says the previous datum is done (its outputs
are in ``/pfs/out``) or failed (``error``), and returns once the next datum is staged at
``/pfs``; when there is none left the worker stops the process. From a shell, or from code
written for Pachyderm::

    while true; do tusk-worker next-datum; transform; done    # or: pachctl next datum

From Python (no process started per datum)::

    from tusk.worker.nextdatum import batch_all_datums

    model = load_model()                 # once

    @batch_all_datums
    def transform() -> None:             # once per datum; an exception fails only that datum
        ...

This module imports nothing beyond the standard library: a shell loop starts it once per
datum, so it must start quickly. The worker listens on the Unix socket named by
``TUSK_NEXT_DATUM_SOCKET``; a request is one line of JSON (``{"error": null}``), the answer
one line (``{"datum": ID, "env": {...}}``, or ``{"done": true}``).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shlex
import socket
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec

P = ParamSpec("P")

SOCKET_ENV = "TUSK_NEXT_DATUM_SOCKET"
EXIT_NO_MORE_DATUMS = 3
"""``tusk-worker next-datum``'s exit status when the job has no datum left for this process
(the worker stops the process right after)."""
_MAX_ERROR = 64 * 1024


class NoMoreDatums(SystemExit):
    """Every datum of the shard is done: the process should end (the worker stops it anyway).
    Uncaught, it ends the program with status 0."""

    def __init__(self) -> None:
        super().__init__(0)


class NextDatumError(RuntimeError):
    """The worker could not be reached or answered something that is not a datum."""


def next_datum(error: str | None = None) -> dict[str, str]:
    """Finish the current datum (successfully, or failed with ``error``) and wait until the
    next is staged; its environment (``PACH_DATUM_ID``, ``<input>=<path>``, …), which is also
    put into ``os.environ``. Raises :class:`NoMoreDatums` when there is none left."""
    path = os.environ.get(SOCKET_ENV)
    if not path:
        raise NextDatumError(
            f"{SOCKET_ENV} is not set: next-datum works only inside a pipeline whose spec sets "
            "transform.datum_batching: true"
        )
    if error is not None:
        error = error[-_MAX_ERROR:] or "failed"
    request = json.dumps({"error": error}).encode() + b"\n"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        try:
            conn.connect(path)
            conn.sendall(request)
            # Blocks while the worker uploads the last datum's outputs and stages the next one.
            with conn.makefile("rb") as answer:
                line = answer.readline()
        except OSError as e:
            raise NextDatumError(f"cannot reach the worker at {path}: {e}") from e
    try:
        reply: dict[str, Any] = json.loads(line)
    except ValueError:
        raise NextDatumError(f"the worker answered {line[:200]!r}, not a datum") from None
    if reply.get("done"):
        raise NoMoreDatums
    env = reply.get("env")
    if not isinstance(env, dict) or "datum" not in reply:
        raise NextDatumError(f"the worker answered {line[:200]!r}, not a datum")
    os.environ.update(env)
    return {str(k): str(v) for k, v in env.items()}


def batch_all_datums(function: Callable[P, object]) -> Callable[P, None]:
    """Call ``function`` once per datum, in this process, until there are none left (as
    Pachyderm's SDK decorator of the same name). An exception it raises fails that datum (it
    is retried as ``datum_tries`` says) and is reported with its traceback; the loop goes on."""

    @functools.wraps(function)
    def loop(*args: P.args, **kwargs: P.kwargs) -> None:
        error: str | None = None
        while True:
            next_datum(error)
            error = None
            try:
                function(*args, **kwargs)
            except Exception:  # the datum's failure, reported to the worker
                error = traceback.format_exc()
                sys.stderr.write(error)
                sys.stderr.flush()

    return loop


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tusk-worker next-datum",
        description="For pipelines with transform.datum_batching: true (Pachyderm's `pachctl "
        "next datum`). Say that the current datum is done, its outputs written to /pfs/out "
        "(or failed, with --error), and wait until the next datum is staged at /pfs. Call it "
        "before the first datum and after each one, in a loop, from the pipeline's command: "
        "`while true; do tusk-worker next-datum; transform; done`. When no datum is left it "
        f"exits with status {EXIT_NO_MORE_DATUMS} and the worker stops the command.",
        epilog="The datum's variables (PACH_DATUM_ID, <input>=<path>, PACH_DATUM_<input>_JOIN_ON "
        '…) cannot reach the calling shell by themselves: `eval "$(tusk-worker next-datum '
        '--export)"` sets them. From Python use tusk.worker.nextdatum.next_datum() or the '
        "@batch_all_datums decorator, which need no process per datum.",
    )
    parser.add_argument(
        "--error",
        metavar="MESSAGE",
        help="The current datum failed, with this reason (it is retried as datum_tries says, "
        "then err_cmd runs if the spec has one).",
    )
    parser.add_argument(
        "--export",
        action="store_true",
        help="Print the next datum's variables as shell `export NAME=value` lines.",
    )
    args = parser.parse_args(argv)
    try:
        env = next_datum(args.error)
    except NoMoreDatums:
        sys.stderr.write("tusk-worker next-datum: no datum left; the worker stops the command\n")
        return EXIT_NO_MORE_DATUMS
    except NextDatumError as e:
        sys.stderr.write(f"tusk-worker next-datum: {e}\n")
        return 2
    if args.export:
        sys.stdout.write("".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(env.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
