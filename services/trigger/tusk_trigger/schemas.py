"""The trigger API's response models."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

JobState = Literal["created", "starting", "running", "finishing", "success", "failure", "killed"]
TERMINAL_STATES = frozenset({"success", "failure", "killed"})


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PipelineInfo(Model):
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


class InputCommitInfo(Model):
    name: str
    repo: str
    branch: str
    commit: str


class DatumCountsInfo(Model):
    total: int = 0
    processed: int = 0
    skipped: int = 0
    failed: int = 0
    recovered: int = 0


class JobInfo(Model):
    id: str
    pipeline: str
    version: int
    state: JobState
    reason: str | None
    inputs: list[InputCommitInfo]
    global_id: str
    output_repo: str
    output_branch: str
    output_commit: str | None
    counts: DatumCountsInfo
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobPage(Model):
    items: list[JobInfo]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page")


class ErrorBody(Model):
    error: str
    code: str
    details: dict[str, object] | None = None
