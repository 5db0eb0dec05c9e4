"""A running datum's log, live: what the worker copies to its own output while a datum runs,
and how the scheduler reads it back.

A datum's log reaches the meta commit only once the datum has ended. To follow it while it runs
(``tusk logs -f``, ``tusk datum list`` showing ``running``), the worker also writes every line
of it to its own stderr, which the runner keeps (the local runner's attempt log, a pod's log),
framed so that the datum's lines can be told from the worker's own, and numbered so that a
reader polling a moving tail prints each line once::

    tusk-datum <datum> running
    tusk-datum <datum> <n> | <line n of the datum's log, from 0>
    tusk-datum <datum> ended <state>

The end is written before the datum's result is sent, so a reader that sees the result can
find every line and the end in the worker's output (while the runner still keeps it). Only
complete lines are copied; a line still being written shows once its newline comes. At most
:data:`COPY_LIMIT` bytes of a datum are copied; past it one line says so, and the datum's log
(its last MiB) is in the meta commit once it ends.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field

MARKER = "tusk-datum "
COPY_LIMIT = 4 << 20
RUNNING = "running"


def _stderr(data: bytes) -> None:
    sys.stderr.flush()  # the worker's own log lines, written through the text layer, first
    sys.stderr.buffer.write(data)
    sys.stderr.buffer.flush()


class LiveCopy:
    """Copies one datum's log, line by line, framed and numbered, to the worker's output."""

    def __init__(self, datum: str, write: Callable[[bytes], None] = _stderr) -> None:
        self.prefix = f"{MARKER}{datum} ".encode()
        self._write = write
        self._partial = bytearray()
        self._lines = 0
        self._copied = 0
        self._write(self.prefix + b"running\n")

    def add(self, data: bytes) -> None:
        if self._copied > COPY_LIMIT:
            return
        self._partial += data
        end = self._partial.rfind(b"\n")
        if end < 0:
            return
        lines = bytes(self._partial[:end]).split(b"\n")
        del self._partial[: end + 1]
        if self._copied + end > COPY_LIMIT:
            lines = [f"[tusk: live copy stopped after {COPY_LIMIT >> 20} MiB]".encode()]
        framed = []
        for line in lines:
            framed.append(self.prefix + b"%d | " % self._lines + line + b"\n")
            self._lines += 1
        self._copied += end + 1
        self._write(b"".join(framed))

    def end(self, state: str) -> None:
        if self._partial:
            self.add(b"\n")
        self._write(self.prefix + b"ended " + state.encode() + b"\n")


@dataclass
class LiveDatum:
    """A datum as a worker's output shows it: ``running``, or ended with its state; the lines
    of its log found there, the first of them line ``first_line``."""

    datum: str
    state: str = RUNNING
    first_line: int = 0
    lines: list[str] = field(default_factory=list)


def datums_in_output(output: str) -> list[LiveDatum]:
    """Every datum a worker's output (or its tail) shows, in the order they started there."""
    found: dict[str, LiveDatum] = {}
    for line in output.split("\n"):
        if not line.startswith(MARKER):
            continue
        datum, _, rest = line[len(MARKER) :].partition(" ")
        seen = found.get(datum)
        if rest == RUNNING:
            found[datum] = LiveDatum(datum)  # (again: a later attempt's worker starts over)
        elif rest.startswith("ended "):
            found.setdefault(datum, LiveDatum(datum)).state = rest[len("ended ") :]
        else:
            number, bar, text = rest.partition(" | ")
            if not bar or not number.isdigit():
                continue
            if seen is None:  # its start lies before the tail that was read
                seen = found[datum] = LiveDatum(datum, first_line=int(number))
            seen.lines.append(text)
    return list(found.values())
