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


class RepoCreate(Model):
    name: str = Field(
        description="1-63 letters, digits, '_' or '-'", examples=["raw"], json_schema_extra=_NAME
    )
    description: str = Field(default="", max_length=10_000)


class RepoInfo(Model):
    name: str
    description: str
    created_at: datetime
    branches: list[str]
    size_bytes: int = Field(description="Size of the master branch's head commit")
    commit_count: int


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


class CommitRefModel(Model):
    repo: str = Field(json_schema_extra=_NAME)
    commit: str = Field(
        description="A commit id, or a branch (resolved to its head)", json_schema_extra=_REF
    )


class CommitStart(Model):
    branch: str = Field(default="master", json_schema_extra=_NAME)
    description: str = Field(default="", max_length=10_000)
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


class CommitFinish(Model):
    error: str | None = Field(
        default=None, max_length=100_000, description="Finish the commit marked failed"
    )


class CommitInfo(Model):
    id: str
    repo: str
    branch: str | None
    parent: str | None
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
