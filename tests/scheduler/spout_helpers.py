"""What the spout and service tests share: a stand-in for the trigger's pipeline list (the
supervisor reads nothing else of the trigger) and pipeline specs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tusk.wire.jobs import PipelineInfo


@dataclass
class PipelineList:
    """``TriggerClient.list_pipelines`` as the trigger answers it, for pipelines set by hand."""

    specs: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)

    def put(self, spec: dict[str, Any], version: int = 1) -> None:
        self.specs[spec["pipeline"]["name"]] = (version, spec)

    async def list_pipelines(self) -> list[PipelineInfo]:
        now = datetime.now(UTC)
        return [
            PipelineInfo(
                name=name,
                version=version,
                state="running",
                description="",
                input_repos=[],
                output_repo=name,
                output_branch="master",
                spec=spec,
                created_at=now,
                updated_at=now,
            )
            for name, (version, spec) in self.specs.items()
        ]
