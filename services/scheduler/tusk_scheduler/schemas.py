"""The scheduler API's response models (kept apart from the SQL rows)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

JobState = Literal["created", "starting", "running", "finishing", "success", "failure", "killed"]
DatumState = Literal["pending", "running", "success", "skipped", "failed", "recovered"]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(Model):
    error: str
    code: str


class InputCommit(Model):
    name: str
    repo: str
    branch: str
    commit: str


class Counts(Model):
    total: int = 0
    processed: int = 0
    skipped: int = 0
    failed: int = 0
    recovered: int = 0


class ShardInfo(Model):
    shard: int
    attempt: int = Field(description="0 for the first run; more when the worker was lost")
    state: Literal["pending", "started", "done"]
    handle: str | None = Field(description="The runner's name for the worker (local: its pid)")
    exit_code: int | None
    detail: str | None
    started_at: datetime | None
    finished_at: datetime | None


class JobInfo(Model):
    id: str
    pipeline: str
    version: int
    state: JobState
    reason: str | None = Field(description="Why the job failed or was killed")
    cancel_requested: bool
    global_id: str
    inputs: list[InputCommit]
    output_repo: str
    output_branch: str
    output_commit: str | None
    meta_commit: str | None = Field(
        description="On the output repo's `meta` branch: shard specs, datum results and logs"
    )
    counts: Counts
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    shards: list[ShardInfo]


class OutputFile(Model):
    path: str
    hash: str
    size: int


class DatumInfo(Model):
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


class DatumPage(Model):
    items: list[DatumInfo]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page")


class DatumLog(Model):
    job: str
    datum: str
    state: DatumState
    log: str = Field(description="The end of the datum's log (all attempts)")
    truncated: bool = Field(description="Whether the log was cut; `full_log` has all of it")
    full_log: str | None = Field(description="repo@commit:path of the whole log, if any")
