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
    logs: str = Field(default="", description="Local runner: the end of its log")
