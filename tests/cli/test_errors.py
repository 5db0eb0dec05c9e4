"""An error line written to a pipe without rich is the line rich would have written."""

from __future__ import annotations

import io
from contextlib import redirect_stderr

import pytest
import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from rich._emoji_codes import EMOJI
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from tusk_cli import common

MESSAGES = (
    "cannot reach the repo service at http://127.0.0.1:9: All connection attempts failed.",
    "no file /data/[x].csv in raw@master",
    "a path ending in a backslash \\",
    "[bold]not markup[/bold] and \\[escaped]",
    "unicode: dir/ü/日本語",
    "two\nlines",
)
REWRITTEN = (
    "an emoji code :smile: in a name", "a :thumbs_up-emoji: variant", "a\ttab", "a\rreturn",
)
# Could be emoji codes by their characters (rich's table has names such as "1st_place_medal"):
# left to rich, which prints them unchanged.
AMBIGUOUS = ("ratio 1:2:3, a time 10:30:00, a URL http://h:8081/a:b",)


def rich_line(message: str) -> str:
    out = io.StringIO()
    Console(file=out, highlight=False, soft_wrap=True).print(
        f"[bold red]error:[/] [red]{escape(message)}[/]"
    )
    return out.getvalue()


@pytest.fixture
def piped(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    for name in common._RICH_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    common.console.cache_clear()  # rich's console follows sys.stderr; made anew all the same
    return io.StringIO()


@pytest.mark.parametrize("message", MESSAGES + REWRITTEN + AMBIGUOUS)
def test_fail_writes_what_rich_writes(piped: io.StringIO, message: str) -> None:
    with redirect_stderr(piped), pytest.raises(typer.Exit):  # (pytest's capture sets its own)
        common.fail(message)
    assert piped.getvalue() == rich_line(message)


@pytest.mark.parametrize("message", MESSAGES)
def test_plain_messages_need_no_rich(piped: io.StringIO, message: str) -> None:
    assert not common.styled(piped, message)


@pytest.mark.parametrize("message", REWRITTEN)
def test_messages_rich_would_rewrite_go_through_rich(piped: io.StringIO, message: str) -> None:
    assert common.styled(piped, message)


def test_forced_colour_goes_through_rich(
    piped: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert common.styled(piped, "plain")


def test_every_emoji_name_of_rich_is_recognised() -> None:
    assert all(common._EMOJI_NAME.fullmatch(name) for name in EMOJI)


# Notes (`created branch …`) are rich markup; to a pipe they are written without rich.
NOTES = (
    "created branch [bold]raw@dev[/] at 10855ed19f504f819dd168cdf5f85f5a",
    f"finished commit abc on [bold]{escape('a[b]c@x')}[/]: 3 files",
    "moved branch [bold red]" + escape("x\\") + "[/bold red] to y",
    "deleted branch [bold]r@[x][/]",
    "plain, no markup \\[at all]",
    "[green]ok[/green] [link=http://x]a link[/link] left to rich",
    "[#ff0000]a colour by code[/] left to rich",
)


def rich_note(message: str) -> str:
    out = io.StringIO()
    Console(file=out, stderr=True, highlight=False, soft_wrap=True).print(message)
    return out.getvalue()


@pytest.mark.parametrize("message", NOTES)
def test_notes_write_what_rich_writes(piped: io.StringIO, message: str) -> None:
    with redirect_stderr(piped):
        common.note(message)
    assert piped.getvalue() == rich_note(message)


markup_pieces = st.lists(
    st.one_of(
        st.text(alphabet="ab[]/\\ @#=:x", max_size=6),
        st.sampled_from(["[bold]", "[/]", "[/bold]", "[red]", "[bold red]", "[/red]", "\\"]),
    ),
    max_size=8,
).map("".join)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="ab[]/\\ @#=x", max_size=12))
def test_escape_is_riches(text: str) -> None:
    assert common.escape(text) == escape(text)


@settings(max_examples=1000, deadline=None)
@given(markup_pieces)
def test_plain_text_is_what_rich_prints_or_none(markup: str) -> None:
    plain = common.plain_text(markup)
    if plain is None:
        return
    assert plain == Text.from_markup(markup, emoji=False).plain
