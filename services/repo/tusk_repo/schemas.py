"""The repo API's request and response models (kept apart from the SQL rows)."""

from __future__ import annotations

from datetime import datetime
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from tusk.paths import NAME_RE, REF_RE

T = TypeVar("T")

# Documented in the schema; checked by the service, whose messages say what a name may be.
_NAME: JsonDict = {"pattern": NAME_RE.pattern}
_REF: JsonDict = {"pattern": REF_RE.pattern}


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# PostgreSQL cannot store a NUL in text: refused here, on every backend alike.
_NO_NUL = r"^[^\x00]*$"


class RepoCreate(Model):
    name: str = Field(
        description="1-63 letters, digits, '_' or '-'", examples=["raw"], json_schema_extra=_NAME
    )
    description: str = Field(default="", max_length=10_000, pattern=_NO_NUL)
    pipeline: str | None = Field(
        default=None,
        description="The pipeline whose output repo this is: only its jobs may write to it",
    )


class RepoInfo(Model):
    name: str
    description: str
    created_at: datetime
    branches: list[str]
    size_bytes: int = Field(description="Size of the master branch's head commit")
    commit_count: int
    owner_pipeline: str | None = Field(
        default=None, description="The pipeline whose output this repo is, if any"
    )
    keep_days: int | None = None
    keep_last: int | None = None


class BranchCreate(Model):
    name: str = Field(json_schema_extra=_NAME)
    head: str | None = Field(
        default=None,
        description="Branch or commit (with optional ^N) the branch starts at",
        json_schema_extra=_REF,
    )


class BranchMove(Model):
    head: str = Field(
        description="Branch or commit (with optional ^N) to move the head to",
        json_schema_extra=_REF,
    )


class BranchInfo(Model):
    repo: str
    name: str
    head: str | None
    created_at: datetime
    protected: bool = False


class CommitRefModel(Model):
    repo: str = Field(json_schema_extra=_NAME)
    commit: str = Field(
        description="A commit id, or a branch (resolved to its head)", json_schema_extra=_REF
    )


class CommitStart(Model):
    branch: str = Field(default="master", json_schema_extra=_NAME)
    description: str = Field(default="", max_length=10_000, pattern=_NO_NUL)
    provenance: list[CommitRefModel] = Field(
        default_factory=list, max_length=1000, description="Input commits this one derives from"
    )
    global_id: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{32}$",
        description="Id of the change this commit belongs to; default: the commit's own id",
    )
    empty: bool = Field(
        default=False,
        description="Start from no files rather than the parent's (the parent stays the "
        "parent): what a pipeline's output commit does, since a job writes its whole output",
    )
    pipeline: str | None = Field(
        default=None,
        description="The pipeline whose job opens this commit (the scheduler sets it); an "
        "output repo takes commits only from its own pipeline",
    )
    admin_override: str | None = Field(
        default=None,
        min_length=3,
        max_length=1000,
        description="Why an admin writes to a pipeline's output repo or a protected branch by "
        "hand; recorded in the commit",
    )


class CommitFinish(Model):
    error: str | None = Field(
        default=None,
        max_length=100_000,
        pattern=_NO_NUL,
        description="Finish the commit marked failed",
    )


class CommitInfo(Model):
    id: str
    repo: str
    branch: str | None
    parent: str | None
    merge_parent: str | None = Field(
        default=None, description="A merge commit's second parent: the head merged in"
    )
    opened_by: str | None = Field(
        default=None, description="'pipeline:NAME' for a job's commit, 'admin: REASON' for a repair"
    )
    state: Literal["open", "finished"]
    error: str | None
    global_id: str
    provenance: list[CommitRefModel]
    description: str
    size_bytes: int | None
    file_count: int | None
    started_at: datetime
    finished_at: datetime | None


class FileInfo(Model):
    path: str
    type: Literal["file", "dir"]
    size_bytes: int
    hash: str
    file_count: int


class PutResult(Model):
    commit: str
    files: list[FileInfo]


class DiffEntry(Model):
    path: str
    change: Literal["added", "deleted", "modified"]
    size_before: int | None
    size_after: int | None


class DiffResult(Model):
    from_commit: str | None
    to_commit: str
    changes: list[DiffEntry]


class HistoryEntry(Model):
    commit: str
    change: Literal["added", "deleted", "modified"]
    size_bytes: int | None
    hash: str | None
    finished_at: datetime | None


class Page(Model, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="Pass as ?cursor= to get the next page")


class ErrorBody(Model):
    error: str
    code: str
    details: dict[str, object] | None = None


class LinkFile(Model):
    path: str
    hash: str = Field(pattern=r"^[0-9a-f]{64}$", description="Content hash of a stored file")


class LinkRequest(Model):
    files: list[LinkFile] = Field(max_length=1_000_000)


# --- data lifecycle ----------------------------------------------------------------------------


class TagCreate(Model):
    name: str = Field(description="1-63 letters, digits, '_' or '-'", examples=["v1"])
    ref: str = Field(description="The commit to name: a branch, a commit id or another tag")


class TagInfo(Model):
    repo: str
    name: str
    commit: str
    created_at: datetime


class MergeRequest(Model):
    source: str = Field(description="The ref merged in: a branch, a tag or a commit id")
    into: str = Field(description="The branch that receives the merge")
    strategy: Literal["ours", "theirs"] | None = Field(
        default=None,
        description="How a path changed on both sides is resolved: keep the destination's "
        "(ours) or the source's (theirs); none: such paths are conflicts and nothing is written",
    )
    description: str = Field(default="", max_length=10_000)
    admin_override: str | None = Field(
        default=None,
        min_length=3,
        max_length=1000,
        description="Why an admin merges into a pipeline's output repo by hand",
    )


class MergeConflict(Model):
    path: str
    reason: str


class MergeInfo(Model):
    outcome: Literal["fast-forward", "merged", "up-to-date"]
    commit: str | None = Field(description="The branch's head after the merge")
    branch: str
    source: str = Field(description="The commit merged in")
    changed_paths: int = Field(default=0, description="Paths that differ from the old head")
    resolved_conflicts: list[MergeConflict] = Field(
        default_factory=list, description="Paths both sides changed, settled by the strategy"
    )


class DroppedCommits(Model):
    dropped: list[CommitRefModel]
    moved_branches: list[str] = Field(
        default_factory=list, description="'repo@branch' whose head moved to a parent"
    )


class SquashRequest(Model):
    oldest: str = Field(description="The first commit of the range (a ref)")
    newest: str = Field(description="The last commit of the range, which keeps its id")
    cascade: bool = False


class RetentionRules(Model):
    keep_days: int | None = Field(
        default=None, ge=0, description="Keep commits of non-default branches this many days"
    )
    keep_last: int | None = Field(
        default=None, ge=1, description="Keep at least this many newest commits per branch"
    )


class GcReport(Model):
    dry_run: bool
    retention_commits: list[CommitRefModel] = Field(
        description="Commits dropped by retention rules (with a dry run: that would be)"
    )
    tree_nodes: int = Field(description="Directory nodes no commit reaches, deleted")
    files: int = Field(description="File records no commit reaches, deleted")
    chunks: int = Field(description="Chunks deleted from the object store")
    bytes: int = Field(description="Bytes those chunks held")
    kept_recent_chunks: int = Field(
        description="Unreferenced chunks younger than the grace period, kept for uploads in "
        "flight; a later run frees them"
    )
    referenced_chunks: int
    referenced_bytes: int
    seconds: float
