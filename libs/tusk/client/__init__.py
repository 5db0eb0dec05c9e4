"""Python clients for tusk's services (the same REST APIs the CLI and workers use)."""

from tusk.client.http import error_from_response
from tusk.client.repo import RepoClient
from tusk.wire.repo import (  # the same classes as tusk.client.models, without the job models
    BranchInfo,
    CommitInfo,
    CommitRef,
    DiffEntry,
    DiffResult,
    FileInfo,
    HistoryEntry,
    Page,
    PutResult,
    RepoInfo,
)

__all__ = [
    "BranchInfo",
    "CommitInfo",
    "CommitRef",
    "DiffEntry",
    "DiffResult",
    "FileInfo",
    "HistoryEntry",
    "Page",
    "PutResult",
    "RepoClient",
    "RepoInfo",
    "error_from_response",
]
