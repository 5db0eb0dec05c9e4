"""The top-level ``tusk`` command, assembled from one module per kind of thing."""

from __future__ import annotations

from typing import Annotated

import typer

from tusk import __version__
from tusk.cli import (
    auth,
    branches,
    commits,
    contexts,
    draw,
    events,
    files,
    lifecycle,
    logs,
    models,
    pipelines,
    registry,
    repos,
    transfer,
)

DATA = "Data"
HELP = """Versioned data repos and pipelines.

Files live in **repos**; a repo's **branches** point at **commits**, each a snapshot of its
files. Most commands take an address:

**REPO@REF:/PATH**, e.g. `raw@master:/data/a.csv`. REF is a branch or a commit id,
optionally followed by ^N or ~N for ancestors (`raw@master^1` is the commit before master's
head). REF defaults to master, PATH to the root.

The services are found through TUSK_REPO_URL (default http://127.0.0.1:8081),
TUSK_TRIGGER_URL (8082), TUSK_SCHEDULER_URL (8083) and TUSK_INFERENCE_URL (8080), with the
bearer token TUSK_TOKEN if they need one; else through the current context (`tusk context
use NAME`). `tusk status` shows which answer.
"""

app = typer.Typer(
    name="tusk",
    help=HELP,
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"tusk {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the version of tusk and exit.",
        ),
    ] = False,
) -> None:
    """Versioned data repos and pipelines."""


app.add_typer(repos.app, name="repo", rich_help_panel="Metadata")
app.add_typer(branches.app, name="branch", rich_help_panel="Metadata")
app.add_typer(commits.app, name="commit", rich_help_panel="Metadata")

app.command(rich_help_panel=DATA)(transfer.put)
app.command(rich_help_panel=DATA)(transfer.get)
app.command(rich_help_panel=DATA)(files.ls)
app.command(rich_help_panel=DATA)(files.glob)
app.command(rich_help_panel=DATA)(files.rm)
app.command(rich_help_panel=DATA)(files.diff)
app.command(rich_help_panel=DATA)(commits.log)
app.command(rich_help_panel=DATA)(files.history)

pipelines.pipeline_app.command("draw")(draw.draw_pipelines)
app.add_typer(pipelines.pipeline_app, name="pipeline", rich_help_panel="Pipelines")
app.add_typer(pipelines.job_app, name="job", rich_help_panel="Pipelines")
app.add_typer(pipelines.datum_app, name="datum", rich_help_panel="Pipelines")
app.command(rich_help_panel="Pipelines")(pipelines.lineage)
app.command(rich_help_panel="Pipelines")(logs.logs)
app.add_typer(events.app, name="events", rich_help_panel="Debugging")
app.add_typer(models.app, name="model", rich_help_panel="Inference")
app.command(rich_help_panel="Inference")(models.predict)
lifecycle.register(app, branches.app, commits.app, repos.app)
models.app.command("add")(registry.add)
models.app.command("remove")(registry.remove)
models.app.command("sources")(registry.sources)
app.add_typer(contexts.app, name="context", rich_help_panel="Settings")
app.command(rich_help_panel="Settings")(contexts.status)
app.add_typer(auth.app, name="auth", rich_help_panel="Access")
