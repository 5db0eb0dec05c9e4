"""How a file is shown: by its name, then by what its first bytes look like.

Everything is read as a stream and stops as soon as the page has what it shows, so a file of
any size costs one page of memory. A CSV page N reads the rows before it (streamed and
dropped): deep pages of a huge file take longer, never more memory.
"""

from __future__ import annotations

import contextlib
import csv
import json
import mimetypes
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import PurePosixPath

IMAGE_TYPES = {".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg", ".bmp"}
BINARY_TYPES = {".onnx", ".parquet", ".pkl", ".pickle", ".npy", ".npz", ".zip", ".gz", ".tar"}


def preview_kind(path: str) -> str:
    suffix = PurePosixPath(path).suffix.lower()
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix in IMAGE_TYPES:
        return "image"
    if suffix in (".json", ".jsonl", ".ndjson", ".geojson"):
        return "json" if suffix in (".json", ".geojson") else "text"
    if suffix in BINARY_TYPES:
        return "binary"
    return "text"


def media_type(path: str) -> str:
    guessed, _ = mimetypes.guess_type(PurePosixPath(path).name)
    if guessed is None or guessed.startswith(("text/html", "application/xhtml")):
        # Never let a stored file run as a page of the console's origin.
        return "application/octet-stream" if guessed is None else "text/plain"
    if guessed.startswith("text/"):
        return f"{guessed}; charset=utf-8"
    return guessed


@dataclass(frozen=True)
class CsvPage:
    header: list[str]
    rows: list[list[str]]
    page: int
    first: int  # rows before this page
    has_next: bool


async def _records(chunks: AsyncGenerator[bytes, None]) -> AsyncGenerator[str, None]:
    """Complete CSV records: lines joined while a quoted field spans them."""
    pending = b""
    record = ""
    async for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8", errors="replace")
            record = f"{record}\n{line}" if record else line
            if record.count('"') % 2 == 0:
                yield record.rstrip("\r")
                record = ""
    tail = (record + ("\n" if record else "") + pending.decode("utf-8", errors="replace"))
    if tail.strip():
        yield tail.rstrip("\r\n")


async def csv_page(
    chunks: AsyncGenerator[bytes, None], page: int, page_size: int, delimiter: str = ","
) -> CsvPage:
    header: list[str] | None = None
    rows: list[list[str]] = []
    first = page * page_size
    index = 0
    has_next = False
    records = _records(chunks)
    # Closing both ends the repo service's response as soon as the page is full.
    async with contextlib.aclosing(chunks), contextlib.aclosing(records):
        async for record in records:
            parsed = next(csv.reader([record], delimiter=delimiter), [])
            if header is None:
                header = parsed
                continue
            if index >= first + page_size:
                has_next = True
                break
            if index >= first:
                rows.append(parsed)
            index += 1
    return CsvPage(header or [], rows, page, first, has_next)


@dataclass(frozen=True)
class TextPreview:
    text: str
    truncated: bool
    binary: bool


async def text_preview(
    chunks: AsyncGenerator[bytes, None], limit: int, *, pretty_json: bool = False
) -> TextPreview:
    data = bytearray()
    truncated = False
    async with contextlib.aclosing(chunks):
        async for chunk in chunks:
            data += chunk
            if len(data) > limit:
                truncated = True
                del data[limit:]
                break
    if b"\x00" in data[:8192]:
        return TextPreview("", truncated, binary=True)
    text = bytes(data).decode("utf-8", errors="replace")
    if pretty_json and not truncated:
        with contextlib.suppress(ValueError):
            text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    return TextPreview(text, truncated, binary=False)
