"""The ``tusk-worker`` command: ``next-datum`` (called once per datum by batching user code,
so it must start quickly) without the worker's imports; ``stage`` (a service pod's inputs) to
:mod:`.stage`; everything else to :mod:`.main`."""

from __future__ import annotations

import sys


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["next-datum"]:
        from tusk.worker.nextdatum import main as next_datum

        sys.exit(next_datum(args[1:]))
    if args[:1] == ["stage"]:
        from tusk.worker.stage import main as stage

        sys.exit(stage(args[1:]))
    from tusk.worker.main import main as worker

    worker()


if __name__ == "__main__":
    main()
