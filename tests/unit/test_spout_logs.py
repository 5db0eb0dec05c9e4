"""Following a spout's log by cursor: on the local runner a byte offset into its log file, on
Kubernetes the pod and the timestamp of the last line sent. Each line is sent once, in order."""

from __future__ import annotations

from pathlib import Path

import pytest

from tusk.errors import InvalidArgument
from tusk_scheduler.background import spouts
from tusk_scheduler.background.kube_spouts import lines_after


def test_a_log_file_is_read_from_its_end_then_from_the_cursor(tmp_path: Path) -> None:
    log = tmp_path / "s.log"
    assert spouts.read_log_file(log, None) == ("", None)  # no log yet: nothing to follow from
    log.write_bytes(b"x" * spouts.LOG_TAIL_BYTES + b"one\n")
    tail, cursor = spouts.read_log_file(log, None)
    assert tail.endswith("one\n")
    assert len(tail) == spouts.LOG_TAIL_BYTES
    assert spouts.read_log_file(log, cursor) == ("", cursor)
    with log.open("ab") as file:
        file.write(b"two\nthr")  # a line still being written
    more, cursor = spouts.read_log_file(log, cursor)
    assert more == "two\nthr"
    with log.open("ab") as file:
        file.write(b"ee\n")
    assert spouts.read_log_file(log, cursor)[0] == "ee\n"


def test_a_log_made_anew_is_read_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "s.log"
    log.write_bytes(b"a long first life\n")
    _, cursor = spouts.read_log_file(log, None)
    log.write_bytes(b"again\n")  # restarted, its log truncated
    assert spouts.read_log_file(log, cursor)[0] == "again\n"


def test_a_cursor_it_never_gave_is_refused(tmp_path: Path) -> None:
    (tmp_path / "s.log").write_bytes(b"x\n")
    with pytest.raises(InvalidArgument, match="after='pod/1' is not a log cursor"):
        spouts.read_log_file(tmp_path / "s.log", "pod/1")


def test_a_long_backlog_comes_in_whole_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spouts, "LOG_READ_BYTES", 10)
    log = tmp_path / "s.log"
    log.write_bytes(b"")
    _, cursor = spouts.read_log_file(log, None)
    log.write_bytes(b"1234\n5678\nabcdef\n")
    first, cursor = spouts.read_log_file(log, cursor)
    second, cursor = spouts.read_log_file(log, cursor)
    third, _ = spouts.read_log_file(log, cursor)
    assert (first, second, third) == ("1234\n5678\n", "abcdef\n", "")


POD_LOG = "2026-12-07T22:00:00.1Z one\n2026-12-07T22:00:00.5Z two\n2026-12-07T22:00:01Z three\n"


def test_a_pod_log_is_sent_without_timestamps_and_once() -> None:
    text, cursor = lines_after(POD_LOG, "pod-a", None)
    assert text == "one\ntwo\nthree\n"
    assert cursor == "pod-a/2026-12-07T22:00:01.000000000Z"
    # The kubelet trims the fraction's zeros: "01Z" is before "01.00000001Z", though it sorts
    # after it as text.
    again = POD_LOG + "2026-12-07T22:00:01.00000001Z four\n"
    assert lines_after(again, "pod-a", cursor) == ("four\n", "pod-a/2026-12-07T22:00:01.000000010Z")
    assert lines_after(POD_LOG, "pod-a", cursor) == ("", cursor)


def test_a_new_pod_is_sent_whole() -> None:
    _, cursor = lines_after(POD_LOG, "pod-a", None)
    text, moved = lines_after("2026-12-07T21:00:00Z restarted\n", "pod-b", cursor)
    assert text == "restarted\n"
    assert moved == "pod-b/2026-12-07T21:00:00.000000000Z"
    assert lines_after("", "pod-b", cursor) == ("", None)
