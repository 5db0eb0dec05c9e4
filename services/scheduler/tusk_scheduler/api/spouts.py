"""Where a spout's or service pipeline's command runs: ``tusk pipeline inspect`` and
``tusk logs -p`` say so (a spout has no jobs, hence no datum logs)."""

from __future__ import annotations

from fastapi import APIRouter, Query

from tusk.api import qualified_name
from tusk.auth.http import PrincipalDep
from tusk.errors import InvalidArgument
from tusk.pipelines import PipelineSpec
from tusk.wire.spouts import SpoutPlace
from tusk_scheduler.api.deps import ContextDep
from tusk_scheduler.schemas import ErrorBody

# 503: the trigger service, which holds the pipeline's spec, cannot be reached.
router = APIRouter(
    tags=["spouts"],
    responses={code: {"model": ErrorBody} for code in (400, 403, 404, 503)},
)


@router.get("/spouts/{pipeline:qualified}", response_model=SpoutPlace)
async def where_spout_runs(
    ctx: ContextDep,
    principal: PrincipalDep,
    pipeline: str = qualified_name("Spout or service pipeline", "feed"),
    after: str | None = Query(
        default=None,
        max_length=200,
        description="The `log_cursor` of an earlier answer: its log only from there on",
    ),
) -> SpoutPlace:
    """Where the pipeline's long-running command runs (a process or a Deployment), and its log:
    the end of it, or with `after` what came since (polled, this follows it)."""
    principal.require("pipeline", pipeline, "reader")
    info = await ctx.triggers.inspect_pipeline(pipeline)  # NotFound names a mistyped pipeline
    if info.spec.get("spout") is None and info.spec.get("service") is None:
        raise InvalidArgument(
            f"pipeline {pipeline!r} is neither a spout nor a service: its commands run in jobs "
            f"(tusk logs -p {pipeline})"
        )
    return await ctx.spouts.where(pipeline, PipelineSpec.model_validate(info.spec), after=after)
