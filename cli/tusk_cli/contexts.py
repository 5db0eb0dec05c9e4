"""``tusk context …`` (where the CLI and the SDK find a deployment) and ``tusk status``."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import httpx
import typer
from pydantic import ValidationError
from rich.markup import escape

from tusk import __version__
from tusk.client.contexts import Context, ContextStore
from tusk.errors import InvalidArgument
from tusk_cli.common import JsonOption, load_settings, note, run, show, table

app = typer.Typer(
    help="Named deployments: the services' addresses (and a token) saved under a name, so "
    "that `tusk context use prod` points every later command and `tusk.Client()` at them. "
    "TUSK_*_URL variables still win over the context; TUSK_CONTEXT picks one for one command.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The context's name.")]


def _store() -> ContextStore:
    return ContextStore(load_settings().config_dir)


@app.command("set")
def set_context(
    name: NameArg,
    url: Annotated[str | None, typer.Option(
        "--url", metavar="URL", show_default=False,
        help="One host with every service on its default port (http://tusk.example.com): "
        "repo 8081, trigger 8082, scheduler 8083, inference 8080, S3 gateway 8085. The "
        "options below override single services.",
    )] = None,
    repo_url: Annotated[str | None, typer.Option("--repo-url", metavar="URL", show_default=False,
                                                 help="The repo service.")] = None,
    trigger_url: Annotated[str | None, typer.Option(
        "--trigger-url", metavar="URL", show_default=False,
        help="The trigger service (pipelines, jobs).")] = None,
    scheduler_url: Annotated[str | None, typer.Option(
        "--scheduler-url", metavar="URL", show_default=False,
        help="The scheduler (datums, logs).")] = None,
    inference_url: Annotated[str | None, typer.Option(
        "--inference-url", metavar="URL", show_default=False, help="Model serving.")] = None,
    s3_url: Annotated[str | None, typer.Option(
        "--s3-url", metavar="URL", show_default=False, help="The S3 gateway.")] = None,
    token: Annotated[str | None, typer.Option(
        "--token", show_default=False,
        help="Bearer token sent to the services (kept in the contexts file, readable by you "
        "only).")] = None,
    use: Annotated[bool, typer.Option("--use", help="Make it the current context too.")] = False,
) -> None:
    """Save (or replace) a context. The first one saved becomes the current one.

    Example: `tusk context set staging --url http://10.0.0.5 --use`
    """

    async def main() -> None:
        try:
            base = Context.from_base_url(url) if url else Context()
            given = {
                "repo_url": repo_url, "trigger_url": trigger_url,
                "scheduler_url": scheduler_url, "inference_url": inference_url,
                "s3_url": s3_url, "token": token,
            }
            context = base.model_copy(update={k: v for k, v in given.items() if v})
            context = Context.model_validate(context.model_dump())
        except (ValidationError, ValueError) as e:
            raise InvalidArgument(f"context {name}: {e}") from None
        if context == Context():
            raise InvalidArgument("give --url or at least one --*-url")
        store = _store()
        store.set(name, context, use=use)
        current = store.load().current
        note(f"saved context {escape(name)} in {store.path}"
             + (" (current)" if current == name else f"; `tusk context use {name}` selects it"))

    run(main())


@app.command("use")
def use_context(name: NameArg) -> None:
    """Make NAME the current context."""

    async def main() -> None:
        _store().use(name)
        note(f"using context {escape(name)}")

    run(main())


@app.command("list")
def list_contexts(as_json: JsonOption = False) -> None:
    """List the contexts; the current one is marked *."""

    async def main() -> None:
        data = _store().load()
        if as_json:
            typer.echo(json.dumps({
                "current": data.current,
                "contexts": {n: c.model_dump(exclude_none=True, exclude={"token"})
                             for n, c in data.contexts.items()},
            }, indent=2))
            return
        grid = table("", "NAME", "REPO", "TRIGGER", "SCHEDULER", "INFERENCE", "TOKEN")
        for name, c in sorted(data.contexts.items()):
            grid.add_row(
                "*" if name == data.current else "", escape(name), c.repo_url or "-",
                c.trigger_url or "-", c.scheduler_url or "-", c.inference_url or "-",
                "set" if c.token else "-",
            )
        show(grid)

    run(main())


@app.command("remove")
def remove_context(name: NameArg) -> None:
    """Delete a context."""

    async def main() -> None:
        _store().remove(name)
        note(f"removed context {escape(name)}")

    run(main())


SERVICES = ("repo", "trigger", "scheduler", "inference")


async def _probe(client: httpx.AsyncClient, name: str, url: str) -> dict[str, object]:
    row: dict[str, object] = {"service": name, "url": url, "up": False}
    try:
        response = await client.get(f"{url}/v1/about")
    except httpx.HTTPError as e:
        row["error"] = str(e) or type(e).__name__
        return row
    if response.status_code == 401:
        row["error"] = "answers, but needs a token (TUSK_TOKEN or the context's --token)"
        return row
    if not response.is_success:
        row["error"] = f"HTTP {response.status_code} from /v1/about; is it a tusk {name} service?"
        return row
    try:
        # The service's own model, from a module that imports FastAPI: only when asked.
        from tusk.about import ServiceAbout

        about = ServiceAbout.model_validate_json(response.content)
    except ValidationError:
        row["error"] = "the answer is not a tusk service's"
        return row
    if about.service != name:
        row["error"] = f"this address answers as the {about.service} service"
        return row
    row.update(up=True, **about.model_dump())
    return row


def status(as_json: JsonOption = False) -> None:
    """Which services answer at the addresses in use, their versions, and the database and
    event bus each runs on. Exits 1 when any does not answer."""

    async def main() -> list[dict[str, object]]:
        settings = load_settings()
        headers = {"Authorization": f"Bearer {settings.token}"} if settings.token else {}
        urls = {name: getattr(settings, f"{name}_url") for name in SERVICES}
        async with httpx.AsyncClient(headers=headers, timeout=min(settings.timeout, 5.0)) as c:
            rows = await asyncio.gather(*(_probe(c, n, u) for n, u in urls.items()))
        if settings.context:
            note(f"context: {escape(settings.context)}")
        return list(rows)

    rows = run(main())
    if as_json:
        typer.echo(json.dumps({"cli_version": __version__, "services": rows}, indent=2))
    else:
        grid = table("SERVICE", "URL", "STATE", "VERSION", "DATABASE", "BUS", "")
        for row in rows:
            grid.add_row(
                str(row["service"]), str(row["url"]),
                "[green]up[/]" if row["up"] else "[red]down[/]",
                str(row.get("version", "-")), escape(str(row.get("database") or "-")),
                escape(str(row.get("bus", "-"))), escape(str(row.get("error", ""))),
            )
        show(grid)
    if not all(row["up"] for row in rows):
        raise typer.Exit(1)
