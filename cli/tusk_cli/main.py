"""The top-level ``tusk`` command: a table of commands, each imported only when it runs.

Importing every command module (and through them the client, its models, rich's tables…)
cost most of a second before `tusk ls` did anything. Here the top-level group knows each
command by name, help panel and one-line summary; `tusk ls` imports `tusk_cli.files` alone,
and `tusk --help` lists everything without importing any of it.

Commands that run services (`tusk up`, `tusk migrate`) are not the CLI's: the composition
root, ``tusk_stack``, passes them to :func:`build_app` as entries of its own.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

import typer
import typer.main
from typer import _click as click
from typer.core import TyperCommand, TyperGroup
from typer.models import TyperInfo

from tusk import __version__

MARKUP: Literal["markdown"] = "markdown"
HELP = """Versioned data repos and pipelines.

Files live in **repos**; a repo's **branches** point at **commits**, each a snapshot of its
files. Most commands take an address:

**REPO@REF:/PATH**, e.g. `raw@master:/data/a.csv`, or `vision/raw@master:/a.png` for a repo
of project `vision`. REF is a branch or a commit id,
optionally followed by ^N or ~N for ancestors (`raw@master^1` is the commit before master's
head). REF defaults to master, PATH to the root.

The services are found through TUSK_REPO_URL (default http://127.0.0.1:8081),
TUSK_TRIGGER_URL (8082), TUSK_SCHEDULER_URL (8083) and TUSK_INFERENCE_URL (8080), with the
bearer token TUSK_TOKEN if they need one; else through the current context (`tusk context
use NAME`). `tusk status` shows which answer.
"""


@dataclass(frozen=True)
class Entry:
    """A top-level command, found by name without importing it.

    ``target`` is ``module:attribute``: a ``typer.Typer`` (a group of subcommands) or a
    function (one command). ``summary`` is what `tusk --help` shows beside the name; a test
    holds it equal to the first paragraph of the command's own help.
    """

    name: str
    target: str
    panel: str
    summary: str

    def load(self) -> click.Command:
        module_name, _, attribute = self.target.partition(":")
        found = getattr(importlib.import_module(module_name), attribute)
        if isinstance(found, typer.Typer):
            # As add_typer would: the group takes the top level's markup, not its default.
            command: click.Command = typer.main.get_group_from_info(
                TyperInfo(found, name=self.name, rich_help_panel=self.panel),
                pretty_exceptions_short=True,
                rich_markup_mode=MARKUP,
                suggest_commands=True,
            )
        else:
            single = typer.Typer(add_completion=False, rich_markup_mode=MARKUP)
            single.command(name=self.name, rich_help_panel=self.panel, cls=PlainValuesCommand)(
                found
            )
            command = typer.main.get_command(single)
        return command

    def stub(self) -> TyperCommand:
        """What `tusk --help` lists: the name, the panel and the summary, nothing imported."""
        return TyperCommand(name=self.name, help=self.summary, rich_help_panel=self.panel)


def plain_values(params: Iterable[click.Parameter]) -> None:
    """Take the values of plain ``str`` parameters and of flags as given; all else is typer's.

    typer checks each parameter's value with a pydantic ``TypeAdapter`` built at first use.
    For a string from the command line, or a flag's True or False, that check passes the value
    through unchanged, and costs an import of pydantic: a quarter of the CPU of `tusk ls`,
    which otherwise needs no pydantic until a server answers. typer's own pass-through
    coercion (its answer for types pydantic does not know) does the same without it. Should
    typer's internals move, only the cost comes back (tests/cli/test_commands.py notices).
    """
    try:
        from typer._coercion import PassThroughRuntimeParam
        from typer.core import _TyperParameter
    except ImportError:  # pragma: no cover - another typer
        return
    for param in params:
        if not isinstance(param, _TyperParameter) or param._runtime_param is not None:
            continue
        described = param.type_descriptor
        plain_string = described.annotation is str and param.nargs == 1 and not param.multiple
        flag = described.annotation is bool and getattr(param, "is_flag", False)
        if (plain_string or flag) and described.parameter_info.parser is None:
            param._runtime_param = PassThroughRuntimeParam(
                parameter_info=described.parameter_info, annotation=described.annotation
            )


class PlainValuesCommand(TyperCommand):
    """A command whose strings and flags typer takes as given (see :func:`plain_values`)."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        params = super().get_params(ctx)  # with --help, made here at first use
        plain_values(params)
        return params


DATA, METADATA, PIPELINES = "Data", "Metadata", "Pipelines"
INFERENCE, SETTINGS = "Inference", "Settings"

# In the order `tusk --help` lists them (commands before groups, as typer lists them).
COMMANDS: tuple[Entry, ...] = (
    Entry("put", "tusk_cli.transfer:put", DATA,
          "Upload a file or a directory tree into a commit."),
    Entry("get", "tusk_cli.transfer:get", DATA,
          "Download a file (to stdout, or to -o) or a directory tree (-r -o DIR)."),
    Entry("ls", "tusk_cli.files:ls", DATA,
          "List a directory of a commit (the root by default), or show one file."),
    Entry("glob", "tusk_cli.files:glob", DATA,
          "List the files and directories matching a glob pattern."),
    Entry("rm", "tusk_cli.files:rm", DATA,
          "Delete a file, or a directory with everything below it."),
    Entry("diff", "tusk_cli.files:diff", DATA,
          "Show the files added, deleted or modified by a commit (below PATH if given)."),
    Entry("log", "tusk_cli.commits:log", DATA,
          "Show a commit and its ancestors, newest first."),
    Entry("history", "tusk_cli.files:history", DATA,
          "Show the commits in which a file or directory changed, newest first."),
    Entry("lineage", "tusk_cli.pipelines:lineage", PIPELINES,
          "Walk provenance from a commit: `--up` to the data it came from (default), `--down` "
          "to everything derived from it. Every commit of one change shares its global id."),
    Entry("logs", "tusk_cli.logs:logs", PIPELINES,
          "Print the logs of a pipeline's datums: stdout and stderr of every attempt, datum "
          "by datum."),
    Entry("predict", "tusk_cli.models:predict", INFERENCE,
          "Score rows with a served model, and show which model version and data produced "
          "it."),
    Entry("merge", "tusk_cli.lifecycle:merge", DATA,
          "Merge a branch (or tag, or commit) into another branch of the same repo."),
    Entry("gc", "tusk_cli.lifecycle:gc", "Maintenance",
          "Reclaim storage no commit uses any more: after repos, branches or commits were "
          "deleted or squashed, and commits dropped by retention rules (`tusk repo "
          "retention`)."),
    Entry("status", "tusk_cli.contexts:status", SETTINGS,
          "Which services answer at the addresses in use, their versions, and the database "
          "and event bus each runs on. Exits 1 when any does not answer."),
)

GROUPS: tuple[Entry, ...] = (
    Entry("project", "tusk_cli.projects:app", METADATA,
          "Projects: namespaces of repos and pipelines. A repo or pipeline of project `p` is "
          "named `p/NAME` everywhere (`tusk put p/raw@master:/a.csv`, `pipeline.project` in a "
          "spec); one named without a project is in `default`."),
    Entry("repo", "tusk_cli.repos:app", METADATA,
          "Create, list, inspect and delete repos (versioned collections of files)."),
    Entry("branch", "tusk_cli.branches:app", METADATA,
          "Create, list, move and delete branches. A branch's head is its last finished "
          "commit."),
    Entry("commit", "tusk_cli.commits:app", METADATA,
          "Open, finish, abandon, list and inspect commits. A commit is a snapshot of a "
          "repo's files; it is open (writable) until finished."),
    Entry("pipeline", "tusk_cli.pipelines:pipeline_app", PIPELINES,
          "Create and manage pipelines: commands that run over datums of their input repos "
          "whenever an input changes (or a cron input ticks), writing to a repo of their own "
          "name."),
    Entry("job", "tusk_cli.pipelines:job_app", PIPELINES,
          "Jobs: one run of a pipeline version over a set of input commits."),
    Entry("datum", "tusk_cli.pipelines:datum_app", PIPELINES,
          "Datums: the units a job splits its inputs into, each processed on its own."),
    Entry("events", "tusk_cli.events:app", "Debugging",
          "Watch the events the services exchange: from Kafka (TUSK_KAFKA_BOOTSTRAP), or "
          "through the repo service's event feed (TUSK_REPO_URL), as with `tusk up`."),
    Entry("model", "tusk_cli.models:app", INFERENCE,
          "The models the inference service serves, each following a branch of a repo."),
    Entry("tag", "tusk_cli.lifecycle:tag_app", METADATA,
          "Immutable names for commits, usable wherever a ref is (`train@v1:/model.onnx`)."),
    Entry("context", "tusk_cli.contexts:app", SETTINGS,
          "Named deployments: the services' addresses (and a token) saved under a name, so "
          "that `tusk context use prod` points every later command and `tusk.Client()` at "
          "them. TUSK_*_URL variables still win over the context; TUSK_CONTEXT picks one for "
          "one command."),
    Entry("auth", "tusk_cli.auth:app", "Access",
          "Who you are, tokens, roles on repos and pipelines, and the audit log."),
)


class _Commands(MutableMapping[str, click.Command]):
    """The group's commands by name: each imported at its first lookup.

    While `listing` (the group's help is being written) a command not yet imported is
    answered by its stub, so listing forty commands imports none of them.
    """

    def __init__(self, entries: Mapping[str, Entry]) -> None:
        self._entries = entries
        self._loaded: dict[str, click.Command] = {}
        self.listing = False

    def __getitem__(self, name: str) -> click.Command:
        if name in self._loaded:
            return self._loaded[name]
        entry = self._entries[name]
        if self.listing:
            return entry.stub()
        command = self._loaded[name] = entry.load()
        return command

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        del self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        yield from self._entries
        yield from (name for name in self._loaded if name not in self._entries)

    def __len__(self) -> int:
        return len(self._entries) + sum(name not in self._entries for name in self._loaded)


class LazyGroup(TyperGroup):
    """A typer group whose subcommands are :class:`Entry` objects, imported on use."""

    entries: ClassVar[Mapping[str, Entry]] = {}

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.lazy = _Commands(self.entries)
        self.commands = self.lazy

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        params = super().get_params(ctx)  # with --help and typer's --install-completion
        plain_values(params)
        return params

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.lazy)  # names only: items() would import every command

    def format_help(
        self, ctx: click.Context, formatter: click.HelpFormatter
    ) -> None:
        self.lazy.listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self.lazy.listing = False


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"tusk {__version__}")
        raise typer.Exit()


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


def build_app(extra: Sequence[Entry] = ()) -> typer.Typer:
    """The ``tusk`` command: the CLI's own commands, then ``extra`` (the stack's)."""
    commands = (*COMMANDS, *extra, *GROUPS)
    names = [entry.name for entry in commands]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"commands defined twice: {', '.join(duplicates)}")

    class Group(LazyGroup):
        entries = {entry.name: entry for entry in commands}

    app = typer.Typer(
        name="tusk",
        cls=Group,
        help=HELP,
        no_args_is_help=True,
        rich_markup_mode=MARKUP,
        pretty_exceptions_show_locals=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(_options)
    return app


def run(extra: Sequence[Entry] = ()) -> None:
    """Run the ``tusk`` command on the process's arguments (a console script's body)."""
    # httpx imports its own command line client whenever click and pygments are installed
    # (uvicorn brings click): half of httpx's import time, for code tusk never runs.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    build_app(extra)()
