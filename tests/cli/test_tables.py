"""Tables keep identifiers and states whole at any terminal width; free text wraps."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from tusk_cli import common

JOB = "9aaf5c00e1d34b6fa0b4c7d5e8f91234"
REASON = "datum 1f2e failed: exit code 1; stderr ends: " + "a long explanation " * 30


@pytest.mark.parametrize("width", [60, 100, 160])
def test_ids_and_states_survive_a_long_reason(
    width: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=True, color_system=None)
    monkeypatch.setattr(common, "console", lambda name: console)
    monkeypatch.setattr(common, "terminal", lambda stream: True)  # as the console is
    grid = common.table("ID", "PIPELINE", "STATE", "REASON")
    grid.add_row(JOB, "credit-train", "failure", REASON)
    common.show(grid)
    text = out.getvalue()
    assert JOB in text
    assert "credit-train" in text
    assert "failure" in text
    assert "…" not in text
    # The reason is all there, wrapped over lines.
    assert "".join(text.split()).count("alongexplanation") == 30


def test_a_long_table_prints_as_rich_would_without_laying_it_out(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past ``LONG_TABLE`` rows the plain printer takes over (rich took seconds for 10,000):
    the same columns, the same alignment (by terminal cells: wide characters count twice),
    markup gone and escaped brackets shown as they are."""
    laid_out_console = Console(file=io.StringIO(), width=80)
    monkeypatch.setattr(common, "console", lambda name: laid_out_console)
    rows = common.LONG_TABLE + 1

    def grid() -> common.Grid:
        t = common.table("PATH", "TYPE", "SIZE")
        for i in range(rows):
            name = common.escape(f"/d{i}/[x]") if i % 3 else f"/数据{i}.csv"
            t.add_row(f"[bold blue]{name}[/]", "dir" if i % 3 else "file", f"{i} B")
        return t

    common.show(grid())
    plain = capsys.readouterr().out
    common.show_rich(grid())
    laid_out = capsys.readouterr().out
    assert len(plain.splitlines()) == rows + 1
    assert plain.splitlines() == laid_out.splitlines()
    assert "\n/d1/[x]       dir   1 B\n" in plain


SHORT_TABLES = {
    "a listing": (("PATH", "TYPE", "SIZE", "FILES"), [("/a.csv", "file", "12 B", "1"),
                                                      ("/dir", "dir", "1.2 KiB", "30")]),
    "marked cells": (("", "PATH", "SIZE"), [("[green]+[/]", "[green]/new[/]", "5 B"),
                                            ("[red]-[/]", "[red]" + common.escape("/[x]") + "[/]",
                                             "")]),
    "wide characters": (("NAME", "HEAD"), [("数据", "abc"), ("x", "")]),
    "one row, short cells": (("COMMIT", "CHANGE"), [("c1",)]),
    "an emoji code, left to rich": (("NAME",), [("a :smile: b",)]),
    "a link, left to rich": (("NAME",), [("[link=http://x]y[/link]",)]),
    "free text": (("ID", "STATE", "REASON"), [(JOB, "failure", REASON)]),
    "a cell of two lines, left to rich": (("ID", "REASON"), [(JOB, "two\nlines")]),
    "wider than the piped width, left to rich": (("ID", "REASON"), [(JOB, "x" * 10_001)]),
}


@pytest.mark.parametrize("header", [True, False])
@pytest.mark.parametrize("name", sorted(SHORT_TABLES))
def test_a_piped_table_prints_as_rich_would(
    name: str, header: bool, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Piped, a table is printed without rich where it can be: the same text."""
    laid_out_console = Console(file=io.StringIO(), width=common.PIPED_WIDTH)
    monkeypatch.setattr(common, "console", lambda name: laid_out_console)
    for variable in common._RICH_ENVIRONMENT:
        monkeypatch.delenv(variable, raising=False)
    columns, rows = SHORT_TABLES[name]

    def grid() -> common.Grid:
        t = common.table(*columns)
        t.show_header = header
        for row in rows:
            t.add_row(*row)
        return t

    common.show(grid())
    plain = capsys.readouterr().out
    common.show_rich(grid())
    assert plain == capsys.readouterr().out
