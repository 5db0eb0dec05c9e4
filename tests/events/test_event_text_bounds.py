"""Free text in events (a commit's finish error, a job's reason or warning) is cut to a bound,
so that what a user writes can never make an event too large to publish: 100,000 characters
of error were carried whole before, 1.2 MB once JSON-escaped."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tusk.events.bus import encode
from tusk.events.envelope import Envelope, EventData
from tusk.events.types import (
    MAX_EVENT_TEXT,
    CommitFinished,
    DatumCounts,
    JobCancel,
    JobFailed,
    JobSucceeded,
)

NOW = datetime.now(UTC)
LONG = "é😀" * 100_000


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (
            CommitFinished(
                repo="raw", commit="c" * 32, branch="master", parent=None, global_id="g" * 32,
                finished_at=NOW, size_bytes=0, file_count=0, error=LONG,
            ),
            "error",
        ),
        (JobFailed(job="j", pipeline="p", output_commit=None, reason=LONG,
                   counts=DatumCounts(), finished_at=NOW), "reason"),
        (JobCancel(job="j", pipeline="p", reason=LONG), "reason"),
        (JobSucceeded(job="j", pipeline="p", output_commit="o", counts=DatumCounts(),
                      finished_at=NOW, warning=LONG), "warning"),
    ],
)
def test_free_text_is_cut_to_the_bound(event: EventData, field: str) -> None:
    text = getattr(event, field)
    assert text.startswith(LONG[:MAX_EVENT_TEXT])
    assert text.endswith(f"({len(LONG) - MAX_EVENT_TEXT} more characters not shown)")
    record = encode(Envelope.wrap(event, source="tests"))
    assert len(record.value or b"") < 5 * MAX_EVENT_TEXT  # UTF-8: at most 4 bytes a character


def test_short_text_is_carried_whole() -> None:
    event = JobFailed(job="j", pipeline="p", output_commit=None, reason="exit code 1",
                      counts=DatumCounts(), finished_at=NOW)
    assert event.reason == "exit code 1"
