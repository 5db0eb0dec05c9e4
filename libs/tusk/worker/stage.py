"""``tusk-worker stage NAME=REPO@COMMIT …``: download whole commits into ``$TUSK_PFS_ROOT/NAME``
with the worker's own staging, then exit. A service pipeline's pod runs it as its init
container, so that its command finds its inputs at ``/pfs/<input>`` when it starts.

Exit status: 0 staged, 2 an argument or the repo service failed (the message says which).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from tusk.client import RepoClient
from tusk.errors import InvalidArgument, TuskError
from tusk.worker.config import load_settings
from tusk.worker.protocol import EXIT_SUCCESS, EXIT_WORKER_ERROR, DatumInputSpec
from tusk.worker.transfer import RetryPolicy, check_input_name, stage_inputs


def _input(text: str) -> DatumInputSpec:
    name, sep, ref = text.partition("=")
    repo, at, commit = ref.partition("@")
    if not (sep and at and name and repo and commit):
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=REPO@COMMIT")
    try:
        check_input_name(name)
    except TuskError as e:
        raise argparse.ArgumentTypeError(e.message) from e
    return DatumInputSpec(name=name, repo=repo, commit=commit, path="/", type="dir")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tusk-worker stage",
        description="Download whole commits into $TUSK_PFS_ROOT/<name> (a service pipeline's "
        "inputs, before its command starts). Environment: TUSK_REPO_URL, TUSK_TOKEN, "
        "TUSK_PFS_ROOT.",
    )
    parser.add_argument("inputs", nargs="*", type=_input, metavar="NAME=REPO@COMMIT")
    return parser


async def _stage(inputs: Sequence[DatumInputSpec]) -> int:
    settings = load_settings()
    if settings.pfs_root is None:
        raise InvalidArgument("TUSK_PFS_ROOT is not set: it names where the inputs go")
    root = settings.pfs_root
    root.mkdir(parents=True, exist_ok=True)
    (root / "out").mkdir(exist_ok=True)
    async with RepoClient(settings.repo_url, token=settings.token) as client:
        return await stage_inputs(client, inputs, root, RetryPolicy())


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    try:
        count = asyncio.run(_stage(args.inputs))
    except TuskError as e:
        print(f"tusk-worker stage: {e.message}", file=sys.stderr)
        return EXIT_WORKER_ERROR
    names = ", ".join(i.name for i in args.inputs) or "nothing"
    print(f"tusk-worker stage: {count} files of {names} staged", file=sys.stderr)
    return EXIT_SUCCESS
