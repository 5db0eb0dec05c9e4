"""A record as JSON and back, for the event feed (``tusk.events.feed``) and its readers.

Bytes travel as text; bytes that are not UTF-8 are escaped (``surrogateescape``), so a
malformed record arrives as it was stored.
"""

from __future__ import annotations

from typing import Any

from tusk.events.bus import Record

_BYTES = "surrogateescape"


def record_to_json(record: Record) -> dict[str, Any]:
    def text(value: bytes | None) -> str | None:
        return None if value is None else value.decode("utf-8", _BYTES)

    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "key": text(record.key),
        "value": text(record.value),
        "headers": [[name, text(value)] for name, value in record.headers],
        "timestamp_ms": record.timestamp_ms,
    }


def record_from_json(data: dict[str, Any]) -> Record:
    def raw(value: str | None) -> bytes | None:
        return None if value is None else value.encode("utf-8", _BYTES)

    return Record(
        topic=str(data["topic"]),
        key=raw(data.get("key")),
        value=raw(data.get("value")),
        headers=tuple((str(name), raw(value) or b"") for name, value in data.get("headers", [])),
        partition=int(data.get("partition", -1)),
        offset=int(data.get("offset", -1)),
        timestamp_ms=data.get("timestamp_ms"),
    )
