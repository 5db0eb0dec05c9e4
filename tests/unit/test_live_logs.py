"""A running datum's live log: framed and numbered by the worker, found again by the scheduler
in a worker's output (or its tail), and printed once by `tusk logs -f` however polls cut it."""

from __future__ import annotations

import contextlib
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tusk.client.models import DatumLog, LiveDatumLog
from tusk.worker import live
from tusk.worker.live import LiveCopy, datums_in_output
from tusk_cli.logs import _Live

TEXT = st.text(alphabet=st.sampled_from("ab |\r\n"), max_size=40)


def test_a_running_datum_and_an_ended_one() -> None:
    out: list[bytes] = []
    first = LiveCopy("d1", out.append)
    first.add(b"loading\nhalf a li")
    second = LiveCopy("d2", out.append)
    second.add(b"other\n")
    first.add(b"ne\n")
    out.append(b'{"event": "the worker\'s own line"}\n')
    second.end("success")

    found = datums_in_output(b"".join(out).decode())

    assert [(d.datum, d.state, d.first_line, d.lines) for d in found] == [
        ("d1", "running", 0, ["loading", "half a line"]),
        ("d2", "success", 0, ["other"]),
    ]


@given(pieces=st.lists(TEXT, max_size=8))
def test_the_lines_written_are_the_lines_found(pieces: list[str]) -> None:
    out: list[bytes] = []
    copy = LiveCopy("d", out.append)
    for piece in pieces:
        copy.add(piece.encode())
    whole = "".join(pieces)

    [found] = datums_in_output(b"".join(out).decode())
    assert found.lines == whole[: whole.rfind("\n") + 1].split("\n")[:-1]

    copy.end("failed")
    [ended] = datums_in_output(b"".join(out).decode())
    # At the end a last line without its newline counts too.
    expected = (whole if whole.endswith("\n") or not whole else whole + "\n").split("\n")[:-1]
    assert (ended.state, ended.lines) == ("failed", expected)


def test_a_tail_that_starts_mid_datum_numbers_its_first_line() -> None:
    out: list[bytes] = []
    LiveCopy("d", out.append).add(b"zero\none\ntwo\n")
    text = b"".join(out).decode()

    [found] = datums_in_output(text[text.index("one") - 10 :])  # from the middle of a line

    assert (found.first_line, found.lines) == (2, ["two"]) or (found.first_line, found.lines) == (
        1,
        ["one", "two"],
    )


def test_the_copy_stops_at_its_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live, "COPY_LIMIT", 100)
    out: list[bytes] = []
    copy = LiveCopy("d", out.append)
    for n in range(50):
        copy.add(f"line {n}\n".encode())

    [found] = datums_in_output(b"".join(out).decode())

    assert found.lines[-1].startswith("[tusk: live copy stopped")
    assert len(found.lines) < 20


@given(
    log=st.lists(st.sampled_from(["a", "b"]), max_size=12),
    data=st.data(),
)
def test_follow_prints_every_line_once(log: list[str], data: st.DataObject) -> None:
    """However the log grows between polls and wherever a poll's view of the worker's output
    begins, the lines printed are the datum's log, each once, then its end."""
    with contextlib.redirect_stdout(io.StringIO()) as out:
        followed = follow_a_datum(log, data)

    lines = out.getvalue().splitlines()
    body = [line for line in lines if not line.startswith("--- datum d")]
    assert body == log
    if followed:
        assert lines[-1] == "--- datum d ended: success"
    else:  # printed as without -f
        assert lines[0] == "--- datum d (success)"


def follow_a_datum(log: list[str], data: st.DataObject) -> bool:
    """Polls of the live view, then the final log; whether any poll showed the datum."""
    follow = _Live()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(log)), max_size=4)))
    printed_to = 0
    for cut in cuts:
        start = data.draw(st.integers(0, max(printed_to, 0)))  # the tail reaches back so far
        follow.show(live_entry(log, start, cut, "running"))
        printed_to = cut
    if data.draw(st.booleans()):
        follow.show(live_entry(log, data.draw(st.integers(0, printed_to)), len(log), "success"))
    final = "".join(f"{x}\n" for x in log)
    follow.ended(
        DatumLog(job="j", datum="d", state="success", log=final, truncated=False, full_log=None)
    )
    return "d" in follow.next_line


def live_entry(log: list[str], start: int, end: int, state: str) -> LiveDatumLog:
    return LiveDatumLog(
        job="j", datum="d", shard=0, state=state, first_line=start, lines=log[start:end]
    )
