"""What the services answer, as the client reads it: the wire models of :mod:`tusk.wire`,
which the services themselves answer with. Unknown fields are ignored, so an older client
keeps working against a newer server."""

from __future__ import annotations

from tusk.wire.jobs import (
    DatumCounts,
    DatumInfo,
    DatumLog,
    InputCommit,
    JobDetail,
    JobInfo,
    LiveDatumLog,
    OutputFile,
    PipelineInfo,
    ShardInfo,
)
from tusk.wire.repo import (
    BranchInfo,
    CommitInfo,
    CommitRef,
    DiffEntry,
    DiffResult,
    DroppedCommits,
    FileInfo,
    GcReport,
    HistoryEntry,
    MergeConflict,
    MergeInfo,
    Page,
    PutResult,
    RepoInfo,
    TagInfo,
)

__all__ = [
    "BranchInfo",
    "CommitInfo",
    "CommitRef",
    "DatumCounts",
    "DatumInfo",
    "DatumLog",
    "DiffEntry",
    "DiffResult",
    "DroppedCommits",
    "FileInfo",
    "GcReport",
    "HistoryEntry",
    "InputCommit",
    "JobDetail",
    "JobInfo",
    "LiveDatumLog",
    "MergeConflict",
    "MergeInfo",
    "OutputFile",
    "Page",
    "PipelineInfo",
    "PutResult",
    "RepoInfo",
    "ShardInfo",
    "TagInfo",
]
