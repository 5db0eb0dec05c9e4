"""``tusk project …``: create, list and delete projects."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from tusk.paths import validate_project_name
from tusk_cli.common import JsonOption, connect, note, print_json, run, show, table, when

app = typer.Typer(
    help="Projects: namespaces of repos and pipelines. A repo or pipeline of project `p` is "
    "named `p/NAME` everywhere (`tusk put p/raw@master:/a.csv`, `pipeline.project` in a "
    "spec); one named without a project is in `default`.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

ProjectArg = Annotated[
    str,
    typer.Argument(
        metavar="PROJECT",
        help="1-63 letters, digits, '_' or '-', starting with a letter or digit.",
        show_default=False,
    ),
]


@app.command("create")
def create(
    name: ProjectArg,
    description: Annotated[str, typer.Option("--description", "-d", help="What it holds.")] = "",
) -> None:
    """Create a project; then create its repos as `PROJECT/REPO` and its pipelines with
    `pipeline: {name: …, project: {name: PROJECT}}`.

    Example: `tusk project create vision && tusk repo create vision/images`
    """

    async def main() -> None:
        async with connect() as client:
            info = await client.create_project(validate_project_name(name), description)
        note(f"created project [bold]{escape(info.name)}[/]")

    run(main())


@app.command("list")
def list_(as_json: JsonOption = False) -> None:
    """List the projects (`default` first) with how many repos each holds."""

    async def main() -> None:
        async with connect() as client:
            projects = await client.list_projects()
        if as_json:
            print_json(projects)
            return
        grid = table("NAME", "CREATED", "REPOS", "DESCRIPTION")
        for project in projects:
            grid.add_row(
                escape(project.name),
                when(project.created_at) if project.created_at else "-",
                str(project.repo_count),
                escape(project.description),
            )
        show(grid)

    run(main())


@app.command("delete")
def delete(name: ProjectArg) -> None:
    """Delete an empty project. Refused while it holds repos: delete its pipelines and repos
    first. `default` cannot be deleted."""

    async def main() -> None:
        async with connect() as client:
            await client.delete_project(validate_project_name(name))
        note(f"deleted project [bold]{escape(name)}[/]")

    run(main())
