"""``/v1/models``: the models served, added and removed at runtime (tusk's own API; the Open
Inference Protocol has no call for it)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Response, status

from tusk.auth.http import PrincipalDep
from tusk.errors import AlreadyExists, Conflict
from tusk.wire.inference import ModelSource, ModelSourceRequest
from tusk_inference.api.deps import ContextDep
from tusk_inference.context import Context
from tusk_inference.domain.runtime_models import same_source
from tusk_inference.domain.specs import ModelSpec, parse_source

router = APIRouter(
    prefix="/v1/models",
    tags=["model registry"],
    responses={
        400: {"description": "An invalid name or source"},
        404: {"description": "No such model"},
        409: {"description": "The model is configured by the settings, or serves another source"},
    },
)


def _configured(ctx: Context) -> set[str]:
    return {spec.name for spec in ctx.settings.all_models()}


def _listed(ctx: Context) -> list[ModelSource]:
    configured = _configured(ctx)
    return [
        ModelSource(
            name=slot.name,
            source=slot.spec.source,
            batching=slot.spec.batching,
            origin="settings" if slot.name in configured else "runtime",
        )
        for slot in ctx.registry.slots.values()
    ]


def _runtime_specs(ctx: Context) -> list[ModelSpec]:
    configured = _configured(ctx)
    return [s.spec for s in ctx.registry.slots.values() if s.name not in configured]


@router.get("", response_model=list[ModelSource])
async def list_models(ctx: ContextDep, principal: PrincipalDep) -> list[ModelSource]:
    """Every served model the caller may read (reader on its repo), and where it is
    configured."""
    return [m for m in _listed(ctx) if principal.can("repo", _repo_of(ctx, m.name), "reader")]


def _repo_of(ctx: Context, name: str) -> str:
    return ctx.registry.slot(name).spec.repo


@router.put(
    "/{name}",
    response_model=ModelSource,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": ModelSource, "description": "Already served from that source"}},
)
async def add_model(
    name: str,
    body: ModelSourceRequest,
    ctx: ContextDep,
    response: Response,
    principal: PrincipalDep,
    replace: bool = Query(False, description="Replace a runtime model of that name"),
) -> ModelSource:
    """Serve a model from a repo branch, at once and after restarts. Adding the same source
    again answers 200 and changes nothing; another source under a served name needs
    ``replace=true``."""
    spec = parse_source(name, body.source, body.batching)
    # Whoever owns the data decides who serves it.
    principal.require("repo", spec.repo, "owner")
    async with ctx.changing_models:
        if name in _configured(ctx):
            raise Conflict(
                f"model {name!r} is configured by TUSK_MODELS or TUSK_MODELS_FILE; change it "
                "there, or add this one under another name"
            )
        existing = ctx.registry.slots.get(name)
        if existing is not None:
            if same_source(existing.spec, body.source, body.batching):
                response.status_code = status.HTTP_200_OK
                return ModelSource(name=name, source=spec.source, batching=spec.batching,
                                   origin="runtime")
            if not replace:
                raise AlreadyExists(
                    f"model {name!r} already serves {existing.spec.source}; pass replace "
                    f"(`tusk model add --replace`) to serve {spec.source} instead"
                )
        specs = [s for s in _runtime_specs(ctx) if s.name != name]
        ctx.runtime_models.save([*specs, spec])
        ctx.service.add_model(spec)
    return ModelSource(name=name, source=spec.source, batching=spec.batching, origin="runtime")


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_model(name: str, ctx: ContextDep, principal: PrincipalDep) -> Response:
    """Stop serving a model added at runtime; requests already running finish (owners of the
    model's repo)."""
    principal.require("repo", _repo_of(ctx, name), "owner")
    async with ctx.changing_models:
        if name in _configured(ctx):
            raise Conflict(
                f"model {name!r} is configured by TUSK_MODELS or TUSK_MODELS_FILE; remove it "
                "there and restart the service"
            )
        ctx.registry.slot(name)  # 404 naming the served models
        ctx.runtime_models.save([s for s in _runtime_specs(ctx) if s.name != name])
        ctx.service.remove_model(name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
