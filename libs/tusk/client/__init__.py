"""Python clients for tusk's services (the same REST APIs the CLI and workers use)."""

from typing import TYPE_CHECKING, Any

from tusk.client.http import error_from_response
from tusk.client.repo import RepoClient

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    # The wire models (and pydantic with them) are imported when first named: a command that
    # only needs the client, or fails before any answer, does not pay for them.
    if name in __all__:
        from tusk.wire import repo

        return getattr(repo, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
