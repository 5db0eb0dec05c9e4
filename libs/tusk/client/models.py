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
    model_config = ConfigDict(extra="ignore", frozen=True)


class RepoInfo(ApiModel):
    name: str
    description: str
    created_at: datetime
    branches: list[str]
    size_bytes: int
    commit_count: int


class BranchInfo(ApiModel):
    repo: str
    name: str
    head: str | None
    created_at: datetime


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
