"""Pipelines, jobs and datums: what the trigger and scheduler answer and the job events carry."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from tusk.wire.base import WireModel
from tusk.wire.repo import Page

JobState = Literal["created", "starting", "running", "finishing", "success", "failure", "killed"]
DatumState = Literal["pending", "running", "success", "skipped", "failed", "recovered"]
TERMINAL_STATES = frozenset({"success", "failure", "killed"})


class PipelineInfo(WireModel):
    name: str
    version: int
    state: Literal["running", "stopped"]
    description: str
    input_repos: list[str]
    output_repo: str
    output_branch: str
    spec: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    last_job: str | None = None
    last_job_state: JobState | None = None
    warnings: list[str] = Field(
        default_factory=list,
        description="Fields of the spec that have no effect here, each with the reason",
    )


class InputCommit(WireModel):
    """One input of a job: the pfs input `name` reads `repo@branch` at `commit`."""

    name: str
    repo: str
    branch: str
    commit: str


class DatumCounts(WireModel):
    total: int = 0
    processed: int = 0
    skipped: int = 0
    failed: int = 0
    recovered: int = 0

    @property
    def done(self) -> int:
        return self.processed + self.skipped + self.failed


class JobInfo(WireModel):
    id: str
    pipeline: str
    version: int
    state: JobState
    reason: str | None = Field(description="Why the job failed or was killed")
    inputs: list[InputCommit]
    global_id: str
    output_repo: str
    output_branch: str
    output_commit: str | None
    counts: DatumCounts
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def ended(self) -> bool:
        return self.state in TERMINAL_STATES


class JobPage(Page[JobInfo]):
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page")


class ShardInfo(WireModel):
    shard: int
    attempt: int = Field(description="0 for the first run; more when the worker was lost")
    state: Literal["pending", "started", "done"]
    handle: str | None = Field(description="The runner's name for the worker (local: its pid)")
    exit_code: int | None
    detail: str | None
    started_at: datetime | None
    finished_at: datetime | None


class EgressInfo(WireModel):
    """The copy of a job's output commit to the pipeline's ``egress`` target."""

    url: str
    state: Literal["running", "success", "failure"]
    files: int = Field(description="Files copied so far")
    bytes: int = Field(description="Bytes copied so far")
    rows: dict[str, int] | None = Field(
        default=None, description="SQL egress: rows loaded so far, per table"
    )
    error: str | None = None
    finished_at: datetime | None = None


class JobDetail(JobInfo):
    """A job as the scheduler runs it: its shards and where their records are."""

    cancel_requested: bool
    meta_commit: str | None = Field(
        description="On the output repo's `meta` branch: shard specs, datum results and logs"
    )
    shards: list[ShardInfo]
    egress: EgressInfo | None = Field(
        default=None, description="The output commit's copy to the egress target, if any"
    )


class OutputFile(WireModel):
    """A file a datum wrote to the output commit."""

    path: str
    hash: str
    size: int


class DatumInfo(WireModel):
    job: str
    datum: str
    state: DatumState
    attempts: int
    shard: int | None
    inputs: list[dict[str, Any]] = Field(
        description="name, repo, branch, commit, path, type, hash and size of each part"
    )
    outputs: list[OutputFile]
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None


class DatumPage(Page[DatumInfo]):
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page")


class DatumLog(WireModel):
    job: str
    datum: str
    state: DatumState
    log: str = Field(description="The end of the datum's log (all attempts)")
    truncated: bool = Field(description="Whether the log was cut; `full_log` has all of it")
    full_log: str | None = Field(description="repo@commit:path of the whole log, if any")


class LiveDatumLog(WireModel):
    """A datum as its worker's output shows it now: running, or just ended there, with the
    lines of its log that output still holds (numbered from the log's first line)."""

    job: str
    datum: str
    shard: int
    state: DatumState
    first_line: int = Field(description="The number of `lines[0]` in the datum's log, from 0")
    lines: list[str]


class JobsDeleted(WireModel):
    """What deleting a job removed: the jobs (the one named, and with ``cascade`` those whose
    output commits derived from its output) and their output commits."""

    jobs: list[str]
    dropped_commits: list[str] = Field(description="'repo@commit' of the deleted commits")
    moved_branches: list[str] = Field(
        default_factory=list, description="'repo@branch' whose head moved to a parent"
    )
