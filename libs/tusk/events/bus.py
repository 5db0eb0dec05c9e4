"""The ``EventBus`` protocol, the records it carries, and the CloudEvents binary-mode codec.

A bus stores records in per-topic logs split into partitions; records with the same key land
in the same partition, so their order holds. Consumers read as a group: each partition is read
by one member at a time, and a member acknowledges what it has handled by committing offsets.
Whatever was delivered but not committed is delivered again (to the member that owns the
partition after a restart or a rebalance): delivery is at-least-once, never at-most-once.

Every bus stores the same bytes: the envelope's CloudEvents attributes as ``ce_*`` headers and
its ``data`` as JSON in the value (binary content mode), so a malformed record looks the same
whether it sits in Kafka or in memory.

The implementations import this module, never the other way round; choosing one from the
settings is :mod:`tusk.events.factory`'s business.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import ValidationError

from tusk.errors import InvalidArgument
from tusk.events.envelope import Envelope

Headers = tuple[tuple[str, bytes], ...]

# Envelope attribute -> header; required ones must be present on every record we accept.
_CE_HEADERS = {
    "specversion": "ce_specversion",
    "id": "ce_id",
    "source": "ce_source",
    "type": "ce_type",
    "time": "ce_time",
    "subject": "ce_subject",
}
_CE_REQUIRED = ("ce_specversion", "ce_id", "ce_source", "ce_type")
CONTENT_TYPE = "content-type"


@dataclass(frozen=True, slots=True)
class Record:
    """One message on a topic. ``partition`` and ``offset`` are set on records read back."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers = ()
    partition: int = -1
    offset: int = -1
    timestamp_ms: int | None = field(default=None, compare=False)

    def header(self, name: str) -> bytes | None:
        """The last value of header ``name`` (Kafka allows repeats), or None."""
        found = None
        for key, value in self.headers:
            if key == name:
                found = value
        return found


class Subscription(Protocol):
    """A consumer: reads the topics it subscribed to, as a member of its group (if any)."""

    async def fetch(self, *, max_records: int = 100, max_wait: float = 1.0) -> list[Record]:
        """The next records (in offset order per partition), or [] after ``max_wait`` seconds."""
        ...

    async def commit(self, records: Sequence[Record]) -> None:
        """Acknowledge ``records``: per partition, the group resumes after the last of them.

        Raises ``Unavailable`` when the broker does not answer. Committing a partition that a
        rebalance took away is not an error: its new owner re-reads from the last commit.
        """
        ...

    async def close(self) -> None:
        """Leave the group without committing anything more."""
        ...


class EventBus(Protocol):
    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        """Publish in order; returns once every event is stored (Kafka: acks from all in-sync
        replicas). Raises ``Unavailable`` if the bus cannot take them; some may have been
        stored, so the caller retries the whole batch (consumers drop duplicates by id)."""
        ...

    async def publish_records(self, records: Sequence[Record]) -> None:
        """Publish raw records (dead letters, tests); same guarantees as :meth:`publish`."""
        ...

    async def subscribe(
        self, topics: Sequence[str], *, group: str | None, from_beginning: bool = True
    ) -> Subscription:
        """Join ``group`` (``None``: a lone reader that commits nothing) reading ``topics``.

        A group with no committed offset starts at the oldest record with ``from_beginning``,
        else at the end.
        """
        ...

    async def close(self) -> None: ...


def encode(envelope: Envelope) -> Record:
    """The envelope as a binary-mode CloudEvent record."""
    attributes = envelope.model_dump(mode="json", include=set(_CE_HEADERS))
    headers = (
        *((_CE_HEADERS[name], str(value).encode()) for name, value in attributes.items()),
        (CONTENT_TYPE, envelope.datacontenttype.encode()),
    )
    return Record(
        topic=envelope.topic,
        key=envelope.key.encode(),
        # UTF-8 as is: escaping every non-ASCII character would triple an event's size.
        value=json.dumps(envelope.data, separators=(",", ":"), ensure_ascii=False).encode(),
        headers=headers,
    )


def decode(record: Record) -> Envelope:
    """The envelope in a record; raises ``InvalidArgument`` saying what is wrong with it."""
    headers = dict(record.headers)
    missing = [h for h in _CE_REQUIRED if h not in headers]
    if missing:
        raise InvalidArgument(f"not a CloudEvent: missing header(s) {', '.join(missing)}")
    try:
        attributes = {
            name: headers[header].decode()
            for name, header in _CE_HEADERS.items()
            if header in headers
        }
        data: Any = json.loads(record.value or b"")
        key = (record.key or b"").decode()
    except (UnicodeDecodeError, ValueError) as e:
        raise InvalidArgument(f"undecodable event: {e}") from None
    if not isinstance(data, dict):
        raise InvalidArgument("event data is not a JSON object")
    attributes.setdefault("subject", key)
    content_type = headers.get(CONTENT_TYPE, b"application/json").decode(errors="replace")
    try:
        return Envelope(
            **attributes, topic=record.topic, key=key, data=data, datacontenttype=content_type
        )
    except ValidationError as e:
        raise InvalidArgument(f"invalid CloudEvent attributes: {e}") from None
