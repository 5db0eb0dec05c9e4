"""What every pipeline step shares: where the inputs are, logging, and how failures exit.

Inputs are read from ``$TUSK_PFS_ROOT/<input name>/…`` and outputs written to
``$TUSK_PFS_ROOT/out/`` (default root ``/pfs``, as in Pachyderm).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from features import InputError

DEFAULT_ROOT = "/pfs"


def root() -> Path:
    return Path(os.environ.get("TUSK_PFS_ROOT") or DEFAULT_ROOT)


def input_dir(name: str) -> Path:
    path = root() / name
    if not path.is_dir():
        raise InputError(f"input {name!r} is not mounted: {path} is not a directory")
    return path


def output_dir() -> Path:
    path = root() / "out"
    path.mkdir(parents=True, exist_ok=True)
    return path


def csv_files(directory: Path) -> list[Path]:
    """Every ``*.csv`` under ``directory``, in a stable order; other files are logged, skipped."""
    files = sorted(p for p in directory.rglob("*") if p.is_file())
    csvs = [p for p in files if p.suffix.lower() == ".csv"]
    for other in sorted(set(files) - set(csvs)):
        logging.getLogger("credit").warning("skipping %s: not a .csv file", other)
    return csvs


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def run(name: str, step: Callable[[], None]) -> None:
    """Run a step: log to stderr; bad input exits 2 with one clear line, a bug exits 1."""
    logging.basicConfig(
        stream=sys.stderr,
        level=os.environ.get("LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    log = logging.getLogger(f"credit.{name}")
    try:
        step()
    except InputError as exc:
        log.error("bad input: %s", exc)
        sys.exit(2)
