"""What the repo service answers: repos, branches, commits, files, history, lifecycle."""

from __future__ import annotations

from datetime import datetime
from typing import Generic, Literal, TypeVar

from pydantic import Field
from pydantic.config import JsonDict

from tusk.paths import MAX_QUALIFIED_NAME_LENGTH, NAME_RE, QUALIFIED_NAME_RE, REF_RE
from tusk.wire.base import WireModel

T = TypeVar("T")

# Documented in the schema; checked by the service, whose messages say what a name may be.
NAME_SCHEMA: JsonDict = {"pattern": NAME_RE.pattern}
# A repo's or pipeline's name, optionally qualified by its project: ``p/x``.
QUALIFIED_NAME_SCHEMA: JsonDict = {
    "pattern": QUALIFIED_NAME_RE.pattern,
    "maxLength": MAX_QUALIFIED_NAME_LENGTH,
}
REF_SCHEMA: JsonDict = {"pattern": REF_RE.pattern}


class Page(WireModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="Pass as ?cursor= to get the next page")


class ProjectInfo(WireModel):
    """A namespace of repos and pipelines; ``default`` holds those named without a project."""

    name: str
    description: str
    created_at: datetime | None = Field(description="None for the built-in default project")
    repo_count: int


class RepoInfo(WireModel):
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


class BranchInfo(WireModel):
    repo: str
    name: str
    head: str | None
    created_at: datetime
    protected: bool = False


class CommitRef(WireModel):
    """A commit of some repo."""

    repo: str = Field(json_schema_extra=QUALIFIED_NAME_SCHEMA)
    commit: str = Field(
        description="A commit id, or a branch (resolved to its head)", json_schema_extra=REF_SCHEMA
    )


class CommitInfo(WireModel):
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
    provenance: list[CommitRef]
    description: str
    size_bytes: int | None
    file_count: int | None
    started_at: datetime
    finished_at: datetime | None


class FileInfo(WireModel):
    path: str
    type: Literal["file", "dir"]
    size_bytes: int
    hash: str
    file_count: int


class PutResult(WireModel):
    commit: str
    files: list[FileInfo]


class DiffEntry(WireModel):
    path: str
    change: Literal["added", "deleted", "modified"]
    size_before: int | None
    size_after: int | None


class DiffResult(WireModel):
    from_commit: str | None
    to_commit: str
    changes: list[DiffEntry]


class HistoryEntry(WireModel):
    commit: str
    change: Literal["added", "deleted", "modified"]
    size_bytes: int | None
    hash: str | None
    finished_at: datetime | None


# --- data lifecycle: tags, merges, history edits, garbage collection --------------------------


class TagInfo(WireModel):
    repo: str
    name: str
    commit: str
    created_at: datetime


class MergeConflict(WireModel):
    path: str
    reason: str


class MergeInfo(WireModel):
    outcome: Literal["fast-forward", "merged", "up-to-date"]
    commit: str | None = Field(description="The branch's head after the merge")
    branch: str
    source: str = Field(description="The commit merged in")
    changed_paths: int = Field(default=0, description="Paths that differ from the old head")
    resolved_conflicts: list[MergeConflict] = Field(
        default_factory=list, description="Paths both sides changed, settled by the strategy"
    )


class DroppedCommits(WireModel):
    dropped: list[CommitRef]
    moved_branches: list[str] = Field(
        default_factory=list, description="'repo@branch' whose head moved to a parent"
    )


class GcReport(WireModel):
    dry_run: bool
    retention_commits: list[CommitRef] = Field(
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
    packs_compacted: int = Field(
        default=0,
        description="Packs of small files mostly unused, whose used pieces were rewritten into "
        "new packs (with a dry run: that would be)",
    )
    pack_bytes_reclaimed: int = Field(
        default=0,
        description="Unused bytes those packs held, freed once the old packs are deleted",
    )
    seconds: float
