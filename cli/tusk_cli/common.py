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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import IO, TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from tusk.client import RepoClient
from tusk.client.config import ClientSettings
from tusk.errors import InvalidArgument, TuskError
from tusk.paths import Address, split_project

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
ProjectOption = Annotated[
    str | None,
    typer.Option(
        "--project",
        help="Only those of this project ('default': those named without one); "
        "without it, every project's.",
    ),
]


def of_project(name: str, project: str | None) -> bool:
    """Whether a repo or pipeline ``name`` belongs to ``project`` (None: any project)."""
    return project is None or split_project("repo", name).project == project


PIPED_WIDTH = 10_000
"""The width tables are laid out to when piped: `tusk ls … | grep` needs whole paths."""


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
        out.width = PIPED_WIDTH
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
_RICH_ENVIRONMENT = (
    "FORCE_COLOR",
    "TTY_COMPATIBLE",
    "TTY_INTERACTIVE",
    "JUPYTER_COLUMNS",
    "JUPYTER_LINES",
)
_REWRITTEN = frozenset("\t\a\b\v\f\r")  # rich expands tabs and drops these control codes


def styled(stream: IO[str], text: str) -> bool:
    """Whether rich would print ``text`` to ``stream`` other than as it is: with styles (a
    terminal, or one forced by the environment), with an emoji for a code in it, or with
    tabs or control codes rewritten."""
    return terminal(stream) or rewritten(text)


def terminal(stream: IO[str]) -> bool:
    """Whether rich would style what it prints to ``stream``: a terminal, or one forced by the
    environment."""
    return stream.isatty() or any(name in os.environ for name in _RICH_ENVIRONMENT)


def rewritten(text: str) -> bool:
    """Whether rich would print ``text`` other than as it is: an emoji for a code in it, or
    tabs or control codes rewritten."""
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


# rich.markup's patterns: what it takes for a tag, and what its ``escape`` escapes.
_MARKUP_TAG = re.compile(r"((\\*)\[([a-z#/@][^[]*?)])")
_TAG_TO_ESCAPE = re.compile(r"(\\*)(\[[a-z#/@][^[]*?])")
_PLAIN_STYLE = re.compile(r"[a-z]+(?: [a-z]+)*")  # a tag such as [bold] or [bold red]


def escape(text: str) -> str:
    """Text as rich markup that prints as itself: rich's ``escape``, without importing rich
    (a test holds the two equal)."""
    escaped = _TAG_TO_ESCAPE.sub(lambda match: f"{match[1]}{match[1]}\\{match[2]}", text)
    if escaped.endswith("\\") and not escaped.endswith("\\\\"):
        return escaped + "\\"
    return escaped


def plain_text(markup: str) -> str | None:
    """The text rich prints for ``markup``, styles left out; None for markup beyond plain
    style tags (links, colours by code, handlers, closing tags out of order), left to rich.
    Follows rich.markup's parsing, which a test holds it to."""
    if "[" not in markup:
        return markup
    parts: list[str] = []
    opened: list[str] = []
    position = 0
    for match in _MARKUP_TAG.finditer(markup):
        whole, escapes, tag = match.groups()
        start, end = match.span()
        if start > position:
            parts.append(markup[position:start].replace("\\[", "["))
        position = end
        if escapes:
            backslashes, escaped = divmod(len(escapes), 2)
            parts.append("\\" * backslashes)
            if escaped:  # an escaped tag prints as itself
                parts.append(whole[len(escapes) :].replace("\\[", "["))
                continue
        if tag.startswith("/"):
            name = tag[1:].strip()
            if not opened or (name and name != opened[-1]):
                return None
            opened.pop()
        elif _PLAIN_STYLE.fullmatch(tag):
            opened.append(tag)
        else:
            return None
    if position < len(markup):
        parts.append(markup[position:].replace("\\[", "["))
    return "".join(parts)


def fail(message: str) -> NoReturn:
    if styled(sys.stderr, message):
        console("stderr").print(f"[bold red]error:[/] [red]{escape(message)}[/]")
    else:  # what rich would write, without loading it
        sys.stderr.write(f"error: {message}\n")
        sys.stderr.flush()
    raise typer.Exit(1)


def note(message: str) -> None:
    """A message (rich markup) for the person at the terminal (stderr; stdout stays data).
    To a pipe, plain text is written as rich would write it, without importing rich: a tenth
    of the CPU of a quick command such as `tusk branch create`."""
    plain = plain_text(message)
    if plain is not None and not styled(sys.stderr, plain):
        sys.stderr.write(plain + "\n")
        sys.stderr.flush()
        return
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


@dataclass
class Column:
    header: str
    wraps: bool
    cells: list[str] = field(default_factory=list)


class Grid:
    """A table's columns and rows, laid out only when shown (see ``show``): by rich on a
    terminal or when a column wraps, else as plain text, without importing rich."""

    def __init__(self, headers: Iterable[str]) -> None:
        self.columns = [Column(h, h in WRAPPING_COLUMNS) for h in headers]
        self.show_header = True

    @property
    def row_count(self) -> int:
        return len(self.columns[0].cells) if self.columns else 0

    def add_row(self, *cells: str) -> None:
        if len(cells) > len(self.columns):
            raise ValueError(f"{len(cells)} cells for {len(self.columns)} columns")
        padded = (*cells, *[""] * (len(self.columns) - len(cells)))
        for column, cell in zip(self.columns, padded, strict=True):
            column.cells.append(cell)

    def rich(self) -> Table:
        """The rich table: borderless; only free-text columns wrap, so ids and paths stay
        whole."""
        from rich.table import Table

        grid = Table(
            box=None,
            header_style="bold",
            pad_edge=False,
            padding=(0, 2, 0, 0),
            show_header=self.show_header,
        )
        for column in self.columns:
            grid.add_column(
                column.header,
                no_wrap=not column.wraps,
                overflow="fold" if column.wraps else "ellipsis",
            )
        for row in zip(*(column.cells for column in self.columns), strict=True):
            grid.add_row(*row)
        return grid

    def plain_cells(self) -> list[list[str]] | None:
        """Each column's cells as the text rich prints for them, or None when rich must lay
        the table out: a cell holds what only rich can render, or lines of its own."""
        if not self.row_count:
            return None
        columns = []
        for column in self.columns:
            cells = []
            for cell in column.cells:
                plain = cell if "[" not in cell else plain_text(cell)
                if plain is None or "\n" in plain or rewritten(plain):
                    return None
                cells.append(plain)
            columns.append(cells)
        return columns


def table(*columns: str) -> Grid:
    return Grid(columns)


def show(grid: Grid) -> None:
    """Print a table to stdout; piped, without the padding at line ends.

    Identifiers and states keep their full width; free-text columns share what is left (at
    least ``MIN_FREE_TEXT`` each), and a table that still does not fit is printed wider than
    the terminal (its lines wrap) rather than cut. Piped, a table is the text rich would
    print, made without rich where it can be (a quick command needs none of rich).
    """
    if grid.row_count > LONG_TABLE:
        show_plain(grid)
        return
    if not terminal(sys.stdout):
        cells = grid.plain_cells()
        # Within the piped width even free text is laid out unwrapped, as plain text is.
        if cells is not None and _plain_width(grid, cells) <= PIPED_WIDTH:
            _print_plain(grid, cells)
            return
    show_rich(grid)


def show_rich(grid: Grid) -> None:
    """``show`` through rich, whatever the table holds."""
    from rich.text import Text

    renderable = grid.rich()
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


def show_plain(grid: Grid) -> None:
    """A long table of identifiers as aligned plain text: laying out 10,000 rows with rich took
    seconds of CPU (``tusk ls`` of a large directory), this takes milliseconds. Styles are
    dropped, except the header's on a terminal, and free text is left to the terminal to
    wrap."""
    columns = grid.plain_cells()
    if columns is None:
        from rich.text import Text

        columns = [
            [c if "[" not in c else Text.from_markup(c).plain for c in column.cells]
            for column in grid.columns
        ]
    _print_plain(grid, columns)


def _cell_len(text: str) -> int:
    if text.isascii():
        return len(text)
    from rich.cells import cell_len  # wide characters take two cells

    return cell_len(text)


def _widths(grid: Grid, columns: list[list[str]]) -> list[int]:
    return [
        max([_cell_len(column.header), *map(_cell_len, cells)])
        for column, cells in zip(grid.columns, columns, strict=True)
    ]


def _plain_width(grid: Grid, columns: list[list[str]]) -> int:
    return sum(_widths(grid, columns)) + 2 * (len(columns) - 1)


def _print_plain(grid: Grid, columns: list[list[str]]) -> None:
    headers = [column.header for column in grid.columns]
    widths = _widths(grid, columns)

    def line(cells: Iterable[str]) -> str:
        padded = [c + " " * (w - _cell_len(c)) for c, w in zip(cells, widths, strict=True)]
        return "  ".join(padded).rstrip()

    if grid.show_header and terminal(sys.stdout):
        console("stdout").print(line(headers), style="bold", markup=False, highlight=False)
    elif grid.show_header:
        typer.echo(line(headers))
    sys.stdout.write("".join(line(row) + "\n" for row in zip(*columns, strict=True)))
    sys.stdout.flush()


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
