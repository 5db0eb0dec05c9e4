"""Where pipeline commands run: the CLI says so when a pipeline is created."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from tusk.auth.http import PrincipalDep
from tusk_scheduler.api.deps import ContextDep

router = APIRouter(tags=["runner"])


class RunnerInfo(BaseModel):
    kind: Literal["local", "kubernetes"]
    code_dir: str | None
    """Local runner: the directory commands run in (relative paths in ``cmd`` resolve there)."""
    namespace: str | None
    """Kubernetes runner: the namespace worker pods run in."""


@router.get("/runner", response_model=RunnerInfo)
async def runner(ctx: ContextDep, _: PrincipalDep) -> RunnerInfo:
    """How this scheduler runs pipeline commands, and where."""
    settings = ctx.settings
    if settings.runner == "kubernetes":
        return RunnerInfo(kind="kubernetes", code_dir=None, namespace=settings.kube_namespace)
    code_dir = (settings.code_dir or Path.cwd()).resolve()
    return RunnerInfo(kind="local", code_dir=str(code_dir), namespace=None)
