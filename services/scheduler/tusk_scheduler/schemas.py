"""The scheduler API's response models (kept apart from the SQL rows): the wire models of
:mod:`tusk.wire.jobs`, which the clients read too."""

from __future__ import annotations

from tusk.wire.base import ErrorBody
from tusk.wire.jobs import (
    DatumCounts,
    DatumInfo,
    DatumLog,
    DatumPage,
    DatumState,
    InputCommit,
    JobState,
    LiveDatumLog,
    OutputFile,
    ShardInfo,
)

# The scheduler's view of a job is the trigger's JobInfo with its execution: shards, meta commit.
from tusk.wire.jobs import JobDetail as JobInfo

__all__ = [
    "DatumCounts",
    "DatumInfo",
    "DatumLog",
    "DatumPage",
    "DatumState",
    "ErrorBody",
    "InputCommit",
    "JobInfo",
    "JobState",
    "LiveDatumLog",
    "OutputFile",
    "ShardInfo",
]
