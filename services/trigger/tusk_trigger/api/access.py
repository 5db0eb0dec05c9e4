"""Who may do what with pipelines and jobs: roles on ``pipeline:NAME`` (held in the repo
service), and ``reader`` on every input repo for whoever defines a pipeline."""

from __future__ import annotations

import structlog

from tusk.auth.principal import Principal
from tusk.errors import Forbidden, InvalidArgument
from tusk.pipelines.spec import PipelineSpec, load_spec
from tusk_trigger.context import Context

log = structlog.get_logger()


def check_may_define(principal: Principal, text: bytes) -> None:
    """Refuse a spec whose inputs the caller may not read (a pipeline reads them for it).
    A spec that does not parse is left for the service to refuse with its full explanation."""
    if principal.admin:
        return
    if principal.worker is not None:
        raise Forbidden(f"{principal.name} is a pipeline worker: it cannot define pipelines")
    try:
        spec: PipelineSpec = load_spec(text)
    except (InvalidArgument, ValueError):
        return
    for repo in spec.input_repos():
        principal.require("repo", repo, "reader")


async def make_owner(ctx: Context, principal: Principal, pipeline: str, output_repo: str) -> None:
    """Whoever creates a pipeline owns it and its output repo, as a repo's creator owns it."""
    if principal.admin:
        return
    for resource in (f"pipeline:{pipeline}", f"repo:{output_repo}"):
        await ctx.repos.grant_role(principal.name, "owner", resource)
    log.info("pipeline owner recorded", pipeline=pipeline, owner=principal.name)
