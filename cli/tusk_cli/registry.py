"""``tusk model add | remove | sources``: change which models the inference service serves,
without a restart; the service keeps the list across restarts."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import typer
from rich.markup import escape

from tusk.client.registry import ModelRegistryClient
from tusk_cli.common import JsonOption, load_settings, note, run, show, table


@asynccontextmanager
async def connect_registry() -> AsyncIterator[ModelRegistryClient]:
    settings = load_settings()
    async with ModelRegistryClient(
        settings.inference_url, settings.token, timeout=settings.timeout
    ) as client:
        yield client


def add(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The model's name in the API.")],
    source: Annotated[str, typer.Argument(
        metavar="REPO@BRANCH:/PATH",
        help="The ONNX file on a branch, e.g. train@master:/model.onnx; each new commit of "
        "the branch is served as it finishes.",
    )],
    batching: Annotated[str | None, typer.Option(
        "--batching", metavar="auto|always|never", show_default=False,
        help="Micro-batching (default: the service's TUSK_INFERENCE_BATCHING).",
    )] = None,
    replace: Annotated[bool, typer.Option(
        "--replace", help="Serve SOURCE under NAME even if NAME serves another source now.",
    )] = False,
) -> None:
    """Serve a model from a repo branch, now and after the service restarts.

    Adding the same NAME and SOURCE again changes nothing. Follow the load with
    `tusk model list`: the version is the branch's head commit once it is loaded.
    """

    async def main() -> None:
        async with connect_registry() as client:
            added = await client.add(name, source, batching=batching, replace=replace)
        note(f"serving model {escape(added.name)} from {escape(added.source)} "
             "(loading its latest commit; `tusk model list` shows when it is ready)")

    run(main())


def remove(
    name: Annotated[str, typer.Argument(metavar="NAME", help="A model added with `model add`.")],
) -> None:
    """Stop serving a model added with `tusk model add` (requests running on it finish)."""

    async def main() -> None:
        async with connect_registry() as client:
            await client.remove(name)
        note(f"model {escape(name)} is no longer served")

    run(main())


def sources(as_json: JsonOption = False) -> None:
    """The configured models and where each is configured: the service's settings
    (TUSK_MODELS, `tusk up --model`) or `tusk model add`."""

    async def main() -> None:
        async with connect_registry() as client:
            models = await client.list()
        if as_json:
            typer.echo(json.dumps([m.model_dump(mode="json") for m in models], indent=2))
            return
        grid = table("MODEL", "SOURCE", "BATCHING", "CONFIGURED BY")
        for m in models:
            grid.add_row(escape(m.name), escape(m.source), m.batching or "-",
                         "tusk model add" if m.origin == "runtime" else "settings")
        show(grid)

    run(main())
