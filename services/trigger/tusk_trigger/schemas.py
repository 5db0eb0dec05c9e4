"""The trigger API's response models: the wire models of :mod:`tusk.wire.jobs`, which the
clients read too."""

from __future__ import annotations

from tusk.wire.base import ErrorBody
from tusk.wire.jobs import (
    TERMINAL_STATES,
    DatumCounts,
    InputCommit,
    JobInfo,
    JobPage,
    JobsDeleted,
    JobState,
    PipelineInfo,
)

__all__ = [
    "TERMINAL_STATES",
    "DatumCounts",
    "ErrorBody",
    "InputCommit",
    "JobInfo",
    "JobPage",
    "JobState",
    "JobsDeleted",
    "PipelineInfo",
]
