"""``tusk events tail``: print events as they arrive, for debugging.

With Kafka (``TUSK_KAFKA_BOOTSTRAP`` or ``--bootstrap``) it reads the topics itself; otherwise
it reads the repo service's event feed (``GET /v1/events``, Server-Sent Events), which is how
the in-process bus of ``tusk up`` is watched. Either way it reads as a lone consumer (no group,
nothing committed), so it never takes events away from the services. Records that are not
valid events are shown too, with what is wrong with them.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Annotated, Any

import httpx
import typer
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict
from rich.markup import escape

from tusk.client.http import ServiceClient
from tusk.errors import InvalidArgument
from tusk_cli.common import load_settings, note, run, settings_error

if TYPE_CHECKING:
    from tusk.events.bus import Record

app = typer.Typer(no_args_is_help=True, rich_markup_mode="markdown")


@app.callback()
def events() -> None:
    """Watch the events the services exchange: from Kafka (TUSK_KAFKA_BOOTSTRAP), or through
    the repo service's event feed (TUSK_REPO_URL), as with `tusk up`."""


class EventsCliSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TUSK_", extra="ignore", frozen=True)

    kafka_bootstrap: str | None = Field(default=None, description="host:port,… of Kafka.")


@app.command("tail")
def tail(
    topic: Annotated[
        list[str] | None,
        typer.Option("--topic", "-t", help="A topic to read (repeatable); default: all of tusk's."),
    ] = None,
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="Start at the oldest event, not the newest.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per line, for scripts.")
    ] = False,
    count: Annotated[
        int | None, typer.Option("--count", "-n", min=1, help="Stop after this many events.")
    ] = None,
    bootstrap: Annotated[
        str | None,
        typer.Option(
            "--bootstrap",
            help="Kafka's host:port; default: TUSK_KAFKA_BOOTSTRAP; neither: the repo "
            "service's event feed at TUSK_REPO_URL.",
        ),
    ] = None,
) -> None:
    """Print events as they arrive, until Ctrl-C (or --count events)."""
    # The event types are many models: built only by the command that shows events.
    from tusk.events.types import DLQ_TOPIC, TOPICS

    run(_tail(topic or [*TOPICS, DLQ_TOPIC], from_beginning, as_json, count, bootstrap))


async def _tail(
    topics: list[str], from_beginning: bool, as_json: bool, count: int | None, bootstrap: str | None
) -> None:
    if bootstrap is None:
        try:
            bootstrap = EventsCliSettings().kafka_bootstrap
        except ValidationError as e:
            raise settings_error(e) from None
    show = functools.partial(_show, as_json=as_json)
    if not bootstrap:
        await _tail_feed(topics, from_beginning, count, show)
        return
    from tusk.events.kafka import KafkaBus  # aiokafka is slow to import: only when needed

    bus = KafkaBus(bootstrap, topics=())
    subscription = await bus.subscribe(topics, group=None, from_beginning=from_beginning)
    note(f"[dim]reading {', '.join(topics)} from {escape(bootstrap)}; Ctrl-C stops[/]")
    shown = 0
    try:
        while count is None or shown < count:
            for record in await subscription.fetch(max_records=100, max_wait=1.0):
                if count is not None and shown >= count:
                    break
                show(record)
                shown += 1
    finally:
        await subscription.close()
        await bus.close()


def _show(record: Record, *, as_json: bool) -> None:
    typer.echo(json.dumps(as_dict(record)) if as_json else as_line(record))


class _FeedClient(ServiceClient):
    service = "repo"
    url_setting = "TUSK_REPO_URL"

    def lines(
        self, topics: list[str], from_beginning: bool
    ) -> AbstractAsyncContextManager[httpx.Response]:
        return self._stream(
            "GET",
            "/v1/events",
            params={"topic": topics, "from_beginning": str(from_beginning).lower()},
            # The feed stays open: only connecting may time out.
            timeout=httpx.Timeout(None, connect=10.0),
        )


async def _tail_feed(
    topics: list[str], from_beginning: bool, count: int | None, show: Callable[[Record], None]
) -> None:
    from tusk.events.wire import record_from_json

    settings = load_settings()
    shown = 0
    async with (
        _FeedClient(settings.repo_url, settings.token) as client,
        client.lines(topics, from_beginning) as response,
    ):
        note(
            f"[dim]reading {', '.join(topics)} from the event feed of "
            f"{escape(settings.repo_url)}; Ctrl-C stops[/]"
        )
        async for line in response.aiter_lines():
            # Server-Sent Events: "data: …" lines carry the records; ":" lines keep it alive.
            if not line.startswith("data:"):
                continue
            show(record_from_json(json.loads(line[len("data:") :].strip())))
            shown += 1
            if count is not None and shown >= count:
                return


def as_dict(record: Record) -> dict[str, Any]:
    """The record as JSON: where it is, and the event (or why it is not one)."""
    from tusk.events.bus import decode

    where: dict[str, Any] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
    }
    try:
        return {**where, "event": decode(record).model_dump(mode="json")}
    except InvalidArgument as e:
        return {
            **where,
            "error": e.message,
            "key": (record.key or b"").decode(errors="replace"),
            "value": (record.value or b"").decode(errors="replace"),
            "headers": {k: v.decode(errors="replace") for k, v in record.headers},
        }


def as_line(record: Record) -> str:
    from tusk.events.bus import decode

    where = f"{record.topic}[{record.partition}]@{record.offset}"
    reason = record.header("dlq_reason")
    suffix = f"  (dead letter: {reason.decode(errors='replace')})" if reason else ""
    try:
        event = decode(record)
    except InvalidArgument as e:
        value = (record.value or b"").decode(errors="replace")[:200]
        return f"{where}  not an event: {e.message}  value={value!r}{suffix}"
    data = json.dumps(event.data, separators=(",", ":"), ensure_ascii=False)
    moment = event.time.strftime("%H:%M:%S.%f")[:-3]
    return f"{moment}  {where}  {event.type}  {event.subject}  {data}{suffix}"
