"""What the scheduler and a worker exchange, through the repo service only.

For each job the scheduler opens two commits on the pipeline's output repo: the **output
commit** on the output branch (what the pipeline produces) and a **meta commit** on the
``meta`` branch (how it was produced: shard specs, datum results, datum logs). A worker is
started with the address of its shard spec in the meta commit; it writes each datum's outputs
to the output commit and its result and log to the meta commit, so the scheduler (or a
scheduler restarted after a crash) learns what happened by reading the meta commit. Workers
need no broker and no database.

Meta commit layout::

    /jobs/<job>/shards/<shard>.json                ShardSpec
    /jobs/<job>/results/<shard>-<run>-<seq>.jsonl  DatumResults, one JSON object per line
    /jobs/<job>/datums/<datum>.log                 the datum's stdout and stderr, all attempts

Results are written in batches, so tiny datums do not cost a request each: a batch file holds
the results of many datums, and comes in the same request as those datums' logs. ``<run>`` is
a random token of one worker run and ``<seq>`` counts that run's batches, so a batch file is
written once and never rewritten; the scheduler reads each one once. A datum may have lines in
several batch files (a run stopped mid-flush, a shard started again): one saying success is
enough. Each result carries the tail of its log, so reading results needs no other request.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tusk.wire.jobs import OutputFile as OutputFile  # re-exported: part of the protocol

META_BRANCH = "meta"

# A worker's exit status. Killed by a signal (SIGTERM from the runner): 128 + the signal number.
EXIT_SUCCESS = 0
"""Every datum of the shard has a successful result."""
EXIT_DATUMS_FAILED = 1
"""The shard ran to its end, and some datums have a failed result."""
EXIT_WORKER_ERROR = 2
"""The worker could not do its job (its spec unreadable, the repo service unreachable after
retries, a commit finished under it); datums without a result may be run again."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DatumInputSpec(_Model):
    """One part of a datum: the file or directory at ``path`` of ``repo@commit``, staged at
    ``<pfs root>/<name><path>``."""

    name: str
    repo: str
    commit: str
    path: str
    type: Literal["file", "dir"]
    join_on: str | None = None
    """The datum's join key for this input (``PACH_DATUM_<name>_JOIN_ON``), in a join."""
    group_by: str | None = None
    """The datum's group key for this input (``PACH_DATUM_<name>_GROUP_BY``), in a group."""
    empty_files: bool = False
    """Pachyderm's ``pfs.empty_files``: stage the files empty, without their contents."""


class DatumSpec(_Model):
    id: str
    inputs: tuple[DatumInputSpec, ...]


class SecretSpec(_Model):
    """A secret the command gets: one ``key`` as ``env_var``, and/or all at ``mount_path``."""

    name: str
    key: str | None = None
    env_var: str | None = None
    mount_path: str | None = None


class TransformSpec(_Model):
    cmd: tuple[str, ...]
    stdin: tuple[str, ...] = ()
    env: dict[str, str] = Field(default_factory=dict)
    secrets: tuple[SecretSpec, ...] = ()
    accept_return_code: tuple[int, ...] = ()
    """Exit codes that count as success, besides 0."""
    err_cmd: tuple[str, ...] = ()
    """Run when a datum has failed every try; its success makes the datum ``recovered``."""
    err_stdin: tuple[str, ...] = ()
    datum_batching: bool = False
    """One process for the shard's datums, which it asks for in turn (``next-datum``)."""


class ShardSpec(_Model):
    job: str
    pipeline: str
    shard: int
    output_repo: str
    output_commit: str
    meta_commit: str  # on the output repo, branch ``meta``
    transform: TransformSpec
    datum_tries: int = 3
    datum_timeout_seconds: float | None = None
    log_tail_bytes: int = 16 * 1024
    """How much of the end of each datum's log goes into its result, as ``log_tail``."""
    datums: tuple[DatumSpec, ...]
    s3_inputs: tuple[str, ...] = ()
    """Inputs (``pfs.s3``) also served as buckets of that name at ``S3_ENDPOINT``."""
    s3_out: bool = False
    """``s3_out``: the output is also served as the writable bucket ``out``."""


class DatumResult(_Model):
    datum: str
    job: str
    shard: int
    state: Literal["success", "failed", "recovered"]
    attempts: int
    outputs: tuple[OutputFile, ...] = ()
    error: str | None = None
    started_at: datetime
    finished_at: datetime
    log_tail: str = ""
    """The last ``log_tail_bytes`` of the datum's log, decoded with errors replaced."""


def shard_path(job: str, shard: int) -> str:
    return f"/jobs/{job}/shards/{shard}.json"


def datums_dir(job: str) -> str:
    return f"/jobs/{job}/datums"


def results_dir(job: str) -> str:
    return f"/jobs/{job}/results"


def results_batch_path(job: str, shard: int, run: str, seq: int) -> str:
    return f"{results_dir(job)}/{shard}-{run}-{seq:06d}.jsonl"


def log_path(job: str, datum: str) -> str:
    return f"{datums_dir(job)}/{datum}.log"


def parse_results_batch(data: bytes) -> tuple[list[DatumResult], list[str]]:
    """The results in a batch file, and what is wrong with each line that is not a result (a
    bad line costs only its datum, which then counts as unfinished)."""
    results: list[DatumResult] = []
    problems: list[str] = []
    for number, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            results.append(DatumResult.model_validate_json(line))
        except ValidationError as e:
            problems.append(f"line {number}: {e}")
    return results, problems


class Assignment(BaseModel):
    """What a warm worker is given: the shard to run, as command-line arguments (on stdin from
    the local runner, over HTTP from the Kubernetes runner)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    argv: list[str]
    env: dict[str, str] = {}
    log_file: Path | None = None
    """Where the worker's own output goes from now on (None: where it went so far)."""
    exit_file: Path | None = None
    """Where the worker writes its exit status (None: its process's exit status is all)."""
    shard_spec: str | None = None
    """The shard's spec as in the meta commit: no need to read it from there."""
    fresh: bool = False
    """No datum of the job has a result yet (its first start): none to look for."""
