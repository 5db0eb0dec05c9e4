"""CloudEvents 1.0 envelope and the registry of typed payloads.

On Kafka the attributes travel as ``ce_*`` headers (binary content mode) and the payload as
JSON in the message value. Each payload type is a frozen pydantic model with a versioned
CloudEvents ``type`` such as ``io.tusk.commit.finished.v1``; consumers look the type up here.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tusk.errors import InvalidArgument


class EventData(BaseModel):
    """Base of every event payload."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    type: ClassVar[str]
    topic: ClassVar[str]

    def key(self) -> str:
        """The Kafka key: events with the same key keep their order."""
        raise NotImplementedError

    def subject(self) -> str:
        return self.key()


EVENT_TYPES: dict[str, type[EventData]] = {}


def register(cls: type[EventData]) -> type[EventData]:
    EVENT_TYPES[cls.type] = cls
    return cls


class Envelope(BaseModel):
    """A CloudEvent: attributes plus the JSON ``data``."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    source: str
    type: str
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    subject: str
    topic: str
    key: str
    data: dict[str, Any]
    specversion: str = "1.0"
    datacontenttype: str = "application/json"

    @classmethod
    def wrap(cls, data: EventData, *, source: str) -> Envelope:
        return cls(
            source=source,
            type=data.type,
            subject=data.subject(),
            topic=data.topic,
            key=data.key(),
            data=data.model_dump(mode="json"),
        )

    def payload(self) -> EventData:
        """The typed payload; raises ``InvalidArgument`` for unknown types or bad data."""
        cls = EVENT_TYPES.get(self.type)
        if cls is None:
            raise InvalidArgument(f"unknown event type {self.type!r}")
        try:
            return cls.model_validate(self.data)
        except ValidationError as e:
            raise InvalidArgument(f"invalid data for {self.type}: {e}") from None
