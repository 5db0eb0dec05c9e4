"""What the repo API answers, as the client sees it.

These mirror the service's response models but are defined here: ``libs`` never imports a
service. Unknown fields are ignored, so an older client keeps working against a newer server.
"""

from __future__ import annotations

from datetime import datetime
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

T = TypeVar("T")


class ApiModel(BaseModel):
    # Built at first use: a command uses a few of these, and `tusk` starts on every call.
    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)


class RepoInfo(ApiModel):
    name: str
    description: str
    created_at: datetime
    branches: list[str]
    size_bytes: int
    commit_count: int
    owner_pipeline: str | None = None
    keep_days: int | None = None
    keep_last: int | None = None


class BranchInfo(ApiModel):
    repo: str
    name: str
    head: str | None
    created_at: datetime
    protected: bool = False


class CommitRef(ApiModel):
    """A commit of some repo: ``commit`` is an id, or a branch (resolved to its head)."""

    repo: str
    commit: str


class CommitInfo(ApiModel):
    id: str
    repo: str
    branch: str | None
    parent: str | None
    state: Literal["open", "finished"]
    merge_parent: str | None = None
    opened_by: str | None = None
    error: str | None
    global_id: str
    provenance: list[CommitRef]
    description: str
    size_bytes: int | None
    file_count: int | None
    started_at: datetime
    finished_at: datetime | None


class FileInfo(ApiModel):
    path: str
    type: Literal["file", "dir"]
    size_bytes: int
    hash: str
    file_count: int


class PutResult(ApiModel):
    commit: str
    files: list[FileInfo]


class DiffEntry(ApiModel):
    path: str
    change: Literal["added", "deleted", "modified"]
    size_before: int | None
    size_after: int | None


class DiffResult(ApiModel):
    from_commit: str | None
    to_commit: str
    changes: list[DiffEntry]


class HistoryEntry(ApiModel):
    commit: str
    change: Literal["added", "deleted", "modified"]
    size_bytes: int | None
    hash: str | None
    finished_at: datetime | None


class Page(ApiModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


# --- pipelines and jobs (trigger and scheduler services) --------------------------------------


class PipelineInfo(ApiModel):
    name: str
    version: int
    state: str
    description: str
    input_repos: list[str]
    output_repo: str
    output_branch: str
    spec: dict[str, object]
    created_at: datetime
    updated_at: datetime
    last_job: str | None = None
    last_job_state: str | None = None
    warnings: list[str] = []


class InputCommit(ApiModel):
    name: str
    repo: str
    branch: str
    commit: str


class DatumCounts(ApiModel):
    total: int = 0
    processed: int = 0
    skipped: int = 0
    failed: int = 0
    recovered: int = 0

    @property
    def done(self) -> int:
        return self.processed + self.skipped + self.failed


class JobInfo(ApiModel):
    id: str
    pipeline: str
    version: int
    state: str
    reason: str | None
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
        return self.state in ("success", "failure", "killed")


class OutputFile(ApiModel):
    path: str
    hash: str
    size: int


class DatumInfo(ApiModel):
    job: str
    datum: str
    state: str
    attempts: int
    shard: int | None
    inputs: list[dict[str, object]]
    outputs: list[OutputFile]
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None


class DatumLog(ApiModel):
    job: str
    datum: str
    state: str
    log: str
    truncated: bool
    full_log: str | None = None


# --- data lifecycle: tags, merges, history edits, garbage collection --------------------------


class TagInfo(ApiModel):
    repo: str
    name: str
    commit: str
    created_at: datetime


class MergeConflict(ApiModel):
    path: str
    reason: str


class MergeInfo(ApiModel):
    outcome: Literal["fast-forward", "merged", "up-to-date"]
    commit: str | None
    branch: str
    source: str
    changed_paths: int = 0
    resolved_conflicts: list[MergeConflict] = []


class DroppedCommits(ApiModel):
    dropped: list[CommitRef]
    moved_branches: list[str] = []


class GcReport(ApiModel):
    dry_run: bool
    retention_commits: list[CommitRef]
    tree_nodes: int
    files: int
    chunks: int
    bytes: int
    kept_recent_chunks: int
    referenced_chunks: int
    referenced_bytes: int
    seconds: float
