"""Where a spout's or a service pipeline's command runs, as the scheduler says it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tusk.wire.base import WireModel


class SpoutPlace(WireModel):
    pipeline: str
    kind: Literal["spout", "service"]
    runner: Literal["local", "kubernetes"]
    running: bool = Field(description="Whether its command (or Deployment) exists now")
    where: str = Field(description="Where it runs, in words: a process, or a Deployment")
    pid: int | None = None
    log_path: str | None = Field(default=None, description="Local runner: its log file")
    namespace: str | None = None
    deployment: str | None = None
    service: str | None = Field(default=None, description="Kubernetes: a service's Service")
    logs: str = Field(
        default="",
        description="The end of its log (its process's on the local runner, its pod's on "
        "Kubernetes); asked with `after`, only what was logged since",
    )
    log_cursor: str | None = Field(
        default=None,
        description="Where its log was read up to: pass it as `after` to read only what comes "
        "next (how `tusk logs -p PIPELINE -f` follows it); none while there is no log",
    )
