"""What every command shares: settings, the client, error handling and output helpers.

Data goes to stdout (tables, or JSON with ``--json``); messages, progress and errors go to
stderr, so that ``tusk get repo@master:/a.csv > a.csv`` and ``tusk ls --json | jq`` work.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import AsyncIterator, Coroutine, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import cache
from typing import IO, TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from tusk.client import RepoClient
from tusk.client.config import ClientSettings
from tusk.errors import InvalidArgument, TuskError
from tusk.paths import Address

if TYPE_CHECKING:  # imported by the commands that use them: `tusk ls` needs no job models
    from pydantic import BaseModel, ValidationError
    from rich.console import Console
    from rich.table import Table

    from tusk.client.pipelines import SchedulerClient, TriggerClient

T = TypeVar("T")


POLL_SECONDS = 1.0
"""How often a following command (``tusk logs -f``) asks again: the services have no log
stream to wait on."""

ADDRESS_HELP = (
    "REPO@REF:/PATH. REF is a branch or commit id, optionally followed by ^N or ~N for "
    "ancestors (master^1 is master's parent); it defaults to master."
)

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")
]


@cache
def console(name: str) -> Console:
    """The rich console of ``stdout`` or ``stderr``, made at first use: importing rich costs
    more than a quick command's own work, and an error written to a pipe needs none of it."""
    from rich.console import Console

    if name == "stderr":
        return Console(stderr=True, highlight=False, soft_wrap=True)
    out = Console(highlight=False, soft_wrap=True)
    if not out.is_terminal:
        # Piped tables must not be cut to 80 columns: `tusk ls … | grep` needs whole paths.
        out.width = 10_000
    return out


def __getattr__(name: str) -> Console:
    # `from tusk_cli.common import stdout` (or stderr): the console, made then.
    if name in ("stdout", "stderr"):
        return console(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# What rich would take for an emoji code (``:smile:``) in text it prints; the names of its
# emoji use these characters only (a test holds this against rich's table).
_EMOJI_CODE = re.compile(r"(:(\S*?)(?:(?:\-)(emoji|text))?:)")
_EMOJI_NAME = re.compile(r"[a-z0-9_!#&()*+\-.\u2019\u00e3\u00e5\u00e7\u00e9\u00ed\u00f4]+")
_RICH_ENVIRONMENT = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "JUPYTER_COLUMNS",
                     "JUPYTER_LINES")
_REWRITTEN = frozenset("\t\a\b\v\f\r")  # rich expands tabs and drops these control codes


def styled(stream: IO[str], text: str) -> bool:
    """Whether rich would print ``text`` to ``stream`` other than as it is: with styles (a
    terminal, or one forced by the environment), with an emoji for a code in it, or with
    tabs or control codes rewritten."""
    if stream.isatty() or any(name in os.environ for name in _RICH_ENVIRONMENT):
        return True
    if not _REWRITTEN.isdisjoint(text):
        return True
    return any(
        _EMOJI_NAME.fullmatch(match.group(2).lower()) for match in _EMOJI_CODE.finditer(text)
    )


# Where the CLI finds the services: TUSK_* variables, else the current context (`tusk context`).
CliSettings = ClientSettings


def settings_error(error: ValidationError, prefix: str = "TUSK_") -> InvalidArgument:
    """A one-line message naming the environment variable(s) that are wrong."""
    problems = []
    for item in error.errors():
        name = str(item["loc"][0]) if item["loc"] else ""
        variable = name if name.upper().startswith(prefix) else prefix + name.upper()
        problems.append(f"{variable}: {item['msg']}")
    return InvalidArgument("invalid configuration: " + "; ".join(problems))


def load_settings() -> ClientSettings:
    return ClientSettings.load()


@asynccontextmanager
async def connect() -> AsyncIterator[RepoClient]:
    settings = load_settings()
    async with RepoClient(settings.repo_url, settings.token, timeout=settings.timeout) as client:
        yield client


@asynccontextmanager
async def connect_trigger() -> AsyncIterator[TriggerClient]:
    from tusk.client.pipelines import TriggerClient

    settings = load_settings()
    async with TriggerClient(
        settings.trigger_url, settings.token, timeout=settings.timeout
    ) as client:
        yield client


@asynccontextmanager
async def connect_scheduler() -> AsyncIterator[SchedulerClient]:
    from tusk.client.pipelines import SchedulerClient

    settings = load_settings()
    async with SchedulerClient(
        settings.scheduler_url, settings.token, timeout=settings.timeout
    ) as client:
        yield client


def escape(text: str) -> str:
    """Text as rich markup that prints as itself (rich's ``escape``, imported when used)."""
    from rich.markup import escape

    return escape(text)


def fail(message: str) -> NoReturn:
    if styled(sys.stderr, message):
        console("stderr").print(f"[bold red]error:[/] [red]{escape(message)}[/]")
    else:  # what rich would write, without loading it
        sys.stderr.write(f"error: {message}\n")
        sys.stderr.flush()
    raise typer.Exit(1)


def note(message: str) -> None:
    """A message (rich markup) for the person at the terminal (stderr; stdout stays data)."""
    console("stderr").print(message)


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; user errors become a red line on stderr and exit code 1."""
    try:
        return asyncio.run(main)
    except TuskError as e:
        fail(e.message)
    except BrokenPipeError:
        # The reader went away (`tusk get … | head`): stop quietly, as cat does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(1) from None
    except OSError as e:
        fail(f"{e.filename}: {e.strerror}" if e.filename and e.strerror else str(e))
    except KeyboardInterrupt:
        console("stderr").print("[red]interrupted[/]")
        raise typer.Exit(130) from None


def ref_of(address: Address) -> str:
    return str(address.ref_or_default)


def need_branch(address: Address, what: str) -> str:
    """The branch an address names, refusing commit ids and ancestry (``repo@dev``)."""
    if address.ref is None or address.ref.ancestry or address.ref.is_commit_id:
        raise InvalidArgument(f"{what} needs a branch: write it as {address.repo}@BRANCH")
    return address.ref.base


def print_json(data: BaseModel | Iterable[BaseModel]) -> None:
    from pydantic import BaseModel

    if isinstance(data, BaseModel):
        value: Any = data.model_dump(mode="json")
    else:
        value = [item.model_dump(mode="json") for item in data]
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False))


WRAPPING_COLUMNS = frozenset(
    {"DESCRIPTION", "BRANCHES", "REASON", "ERROR", "LAST ERROR", "INPUTS", ""}
)
"""Free text: wrapped to fit the terminal. Every other column (ids, names, states) is printed
whole, however narrow the terminal."""
MIN_FREE_TEXT = 12
LONG_TABLE = 500
"""Rows above which a table is printed as plain aligned text, free text unwrapped (see
``show_plain``)."""


def show(renderable: Table) -> None:
    """Print a table to stdout; piped, without the padding at line ends.

    Identifiers and states keep their full width; free-text columns share what is left (at
    least ``MIN_FREE_TEXT`` each), and a table that still does not fit is printed wider than
    the terminal (its lines wrap) rather than cut.
    """
    from rich.text import Text

    if renderable.row_count > LONG_TABLE:
        show_plain(renderable)
        return
    stdout = console("stdout")
    fixed = 0
    free = 0
    for column in renderable.columns:
        if column.no_wrap:
            widest = max(
                (Text.from_markup(c).cell_len if isinstance(c, str) else 0 for c in column.cells),
                default=0,
            )
            column.min_width = max(column.min_width or 0, widest, len(str(column.header)))
            fixed += column.min_width
        else:
            free += MIN_FREE_TEXT
    needed = fixed + free + 2 * max(0, len(renderable.columns) - 1)
    width = max(stdout.width, needed)
    if stdout.is_terminal:
        stdout.print(renderable, width=width)
        return
    with stdout.capture() as captured:
        stdout.print(renderable, width=width)
    typer.echo("\n".join(line.rstrip() for line in captured.get().splitlines()))


def show_plain(renderable: Table) -> None:
    """A long table of identifiers as aligned plain text: laying out 10,000 rows with rich took
    seconds of CPU (``tusk ls`` of a large directory), this takes milliseconds. Styles are
    dropped, except the header's on a terminal, and free text is left to the terminal to
    wrap."""
    from rich.cells import cell_len
    from rich.text import Text

    stdout = console("stdout")
    columns = [
        [c if "[" not in c else Text.from_markup(c).plain for c in map(str, column.cells)]
        for column in renderable.columns
    ]
    headers = [str(column.header) for column in renderable.columns]
    widths = [
        max(cell_len(h), *map(cell_len, cells)) for h, cells in zip(headers, columns, strict=True)
    ]

    def line(cells: Iterable[str]) -> str:
        padded = [c + " " * (w - cell_len(c)) for c, w in zip(cells, widths, strict=True)]
        return "  ".join(padded).rstrip()

    if renderable.show_header and stdout.is_terminal:
        stdout.print(line(headers), style="bold", markup=False, highlight=False)
    elif renderable.show_header:
        typer.echo(line(headers))
    sys.stdout.write("".join(line(row) + "\n" for row in zip(*columns, strict=True)))
    sys.stdout.flush()


def table(*columns: str) -> Table:
    """A borderless table; only free-text columns wrap, so ids and paths stay whole."""
    from rich.table import Table

    grid = Table(box=None, header_style="bold", pad_edge=False, padding=(0, 2, 0, 0))
    for column in columns:
        wraps = column in WRAPPING_COLUMNS
        grid.add_column(column, no_wrap=not wraps, overflow="fold" if wraps else "ellipsis")
    return grid


def size(n: int | None) -> str:
    if n is None:
        return "-"
    amount = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if amount < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")


def when(moment: datetime | None) -> str:
    """Recent times as '5m ago', older ones as a local date and time."""
    if moment is None:
        return "-"
    seconds = (datetime.now(UTC) - moment).total_seconds()
    if 0 <= seconds < 1:
        return "just now"
    for limit, unit, per in ((60, "s", 1), (3600, "m", 60), (86400, "h", 3600)):
        if 0 <= seconds < limit:
            return f"{int(seconds // per)}{unit} ago"
    return moment.astimezone().strftime("%Y-%m-%d %H:%M")
