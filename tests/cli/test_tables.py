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
    monkeypatch.setattr(common, "stdout", console)
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
