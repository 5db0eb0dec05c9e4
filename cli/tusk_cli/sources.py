"""What ``tusk put -f`` reads besides local files, and how it reshapes them, as ``pachctl put
file`` does: a URL (``http://``, ``https://``, ``s3://``) streamed into the commit with a
progress bar; ``--untar`` (a tar archive, compressed or not, unpacked under the path);
``--split line|json|csv`` (a file cut into numbered pieces of ``--target-file-datums`` records
or about ``--target-file-bytes`` each, so a glob of ``/PATH/*`` makes a datum of each;
``--header-records N`` repeats the first N records at the top of every piece).

A URL is streamed straight into the commit; to unpack or split it, it is first streamed to a
temporary file (a tar's members and a split's pieces become many files, uploaded as a tree).
``s3://`` uses the AWS credentials and settings of the environment (``AWS_ACCESS_KEY_ID``,
``AWS_ENDPOINT_URL`` for another S3 server, profiles…).
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, Literal
from urllib.parse import unquote, urlsplit

import httpx
import typer

from tusk.errors import InvalidArgument, NotFound

URL_SCHEMES = ("http://", "https://", "s3://")
_READ = 1 << 20
SplitKind = Literal["line", "json", "csv"]
SPLIT_KINDS: tuple[SplitKind, ...] = ("line", "json", "csv")

UntarOption = Annotated[
    bool,
    typer.Option(
        "--untar",
        help="The file is a tar archive (.tar, .tar.gz, .tgz, .tar.bz2, .tar.xz): put its "
        "files under PATH, keeping their paths, instead of the archive itself.",
    ),
]
SplitOption = Annotated[
    str | None,
    typer.Option(
        "--split",
        metavar="line|json|csv",
        show_default=False,
        help="Cut the file into pieces at record boundaries (lines, JSON values one after "
        "another, or CSV rows, whose quoted fields may hold newlines) and put them as "
        "PATH/0000000000000000, PATH/0000000000000001, … (16 hex digits, in order), so that a "
        "glob of PATH/* makes a datum of each piece.",
    ),
]
TargetDatumsOption = Annotated[
    int,
    typer.Option(
        "--target-file-datums",
        metavar="N",
        min=0,
        help="With --split: records per piece (0: no count limit). Neither this nor "
        "--target-file-bytes: one record per piece.",
    ),
]
HeaderRecordsOption = Annotated[
    int,
    typer.Option(
        "--header-records",
        metavar="N",
        min=0,
        help="With --split: the first N records (a CSV's header row, say) are a header, put "
        "at the top of every piece rather than in the first one only.",
    ),
]
TargetBytesOption = Annotated[
    int,
    typer.Option(
        "--target-file-bytes",
        metavar="BYTES",
        min=0,
        help="With --split: start a new piece once one holds this many bytes (0: no size "
        "limit); a record is never cut.",
    ),
]


def is_url(text: str) -> bool:
    return text.startswith(URL_SCHEMES)


def url_name(url: str) -> str:
    """The last segment of the URL's path: the file's name when PATH names a directory."""
    name = PurePosixPath(unquote(urlsplit(url).path)).name
    if not name:
        raise InvalidArgument(
            f"{url} names no file: give the path to put it at (REPO@BRANCH:/PATH/NAME)"
        )
    return name


@dataclass(frozen=True)
class Opened:
    size: int | None
    """Bytes to come, when the source says."""
    pieces: AsyncIterator[bytes]


@asynccontextmanager
async def open_url(url: str) -> AsyncIterator[Opened]:
    """The URL's bytes as they arrive; a source that cannot be read is a clear error."""
    if url.startswith("s3://"):
        async with _open_s3(url) as opened:
            yield opened
        return
    async with httpx.AsyncClient(follow_redirects=True, timeout=60.0) as client:
        try:
            async with client.stream("GET", url) as response:
                if response.status_code == 404:
                    raise NotFound(f"{url}: not found (HTTP 404)")
                if response.status_code >= 400:
                    raise InvalidArgument(f"{url}: HTTP {response.status_code}")
                length = response.headers.get("content-length")
                # A compressed transfer's length is not the file's: no total then.
                encoded = response.headers.get("content-encoding", "identity") != "identity"
                size = int(length) if length and length.isdigit() and not encoded else None
                yield Opened(size, response.aiter_bytes(_READ))
        except httpx.HTTPError as e:
            raise InvalidArgument(f"cannot read {url}: {e}") from e


@asynccontextmanager
async def _open_s3(url: str) -> AsyncIterator[Opened]:
    from aiobotocore.session import get_session
    from botocore.exceptions import BotoCoreError, ClientError

    parts = urlsplit(url)
    bucket, key = parts.netloc, parts.path.lstrip("/")
    if not bucket or not key:
        raise InvalidArgument(f"{url}: an S3 URL is s3://BUCKET/KEY")
    session = get_session()
    try:
        async with session.create_client("s3") as s3:
            try:
                answer = await s3.get_object(Bucket=bucket, Key=key)
            except ClientError as e:
                code = e.response.get("Error", {}).get("Code", "")
                if code in ("NoSuchKey", "NoSuchBucket", "404"):
                    raise NotFound(f"{url}: {code}") from e
                raise InvalidArgument(f"cannot read {url}: {e}") from e
            body = answer["Body"]

            async def pieces() -> AsyncIterator[bytes]:
                async with body as stream:
                    while piece := await stream.read(_READ):
                        yield piece

            yield Opened(answer.get("ContentLength"), pieces())
    except BotoCoreError as e:
        raise InvalidArgument(f"cannot read {url}: {e}") from e


async def download(url: str, target: Path, progress: Callable[[int], None]) -> None:
    """Stream the URL into the file ``target``."""
    async with open_url(url) as opened:
        with target.open("wb") as out:
            async for piece in opened.pieces:
                out.write(piece)
                progress(len(piece))


# --- reshaping a file ------------------------------------------------------------------------


def untar(archive: Path, into: Path) -> None:
    """Unpack the archive (any compression tarfile reads) into the directory ``into``, refusing
    members that would land outside it, links that point out, and devices."""
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(into, filter="data")
    except tarfile.FilterError as e:
        raise InvalidArgument(f"--untar: refused archive member: {e}") from e
    except (tarfile.TarError, EOFError) as e:
        raise InvalidArgument(f"--untar: not a readable tar archive: {e}") from e


def split(
    source: Path,
    into: Path,
    kind: str,
    *,
    per_piece: int,
    bytes_per_piece: int,
    header_records: int = 0,
) -> int:
    """Cut ``source`` into numbered pieces in ``into``, each starting with the header (the
    first ``header_records`` records); how many pieces."""
    if kind not in SPLIT_KINDS:
        raise InvalidArgument(
            f"--split: {kind!r} is not a way to split; use {', '.join(SPLIT_KINDS[:-1])} or "
            f"{SPLIT_KINDS[-1]}"
        )
    if per_piece == 0 and bytes_per_piece == 0:
        per_piece = 1
    readers: dict[str, Callable[[Path], Iterator[bytes]]] = {
        "line": _lines, "json": _json_values, "csv": _csv_rows,
    }
    records = readers[kind](source)
    header = b"".join(record for _, record in zip(range(header_records), records, strict=False))
    count = 0
    piece: list[bytes] = []
    held = 0

    def flush() -> None:
        nonlocal count, held
        (into / f"{count:016x}").write_bytes(header + b"".join(piece))
        count += 1
        piece.clear()
        held = 0

    for record in records:
        piece.append(record)
        held += len(record)
        if (per_piece and len(piece) >= per_piece) or (bytes_per_piece and held >= bytes_per_piece):
            flush()
    if piece:
        flush()
    return count


def _lines(source: Path) -> Iterator[bytes]:
    with source.open("rb") as lines:
        yield from lines


def _csv_rows(source: Path) -> Iterator[bytes]:
    """Each row of a CSV file as its bytes, unchanged: a line ends a row only outside quotes
    (RFC 4180 doubles a quote inside a quoted field, so an even count of quotes so far means
    outside)."""
    row: list[bytes] = []
    quotes = 0
    with source.open("rb") as lines:
        for line in lines:
            row.append(line)
            quotes += line.count(b'"')
            if quotes % 2 == 0:
                yield b"".join(row)
                row.clear()
                quotes = 0
    if row:
        raise InvalidArgument("--split csv: the file ends inside a quoted field")


def _json_values(source: Path) -> Iterator[bytes]:
    """Each JSON value of a file of values one after another (JSON Lines, or pretty-printed
    objects in a row), as its own text plus a newline."""
    text = source.read_text(encoding="utf-8")
    decoder = json.JSONDecoder()
    at = 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at >= len(text):
            return
        try:
            _, end = decoder.raw_decode(text, at)
        except json.JSONDecodeError as e:
            line = text.count("\n", 0, e.pos) + 1
            raise InvalidArgument(f"--split json: line {line}: {e.msg}") from None
        yield text[at:end].encode() + b"\n"
        at = end


def check_options(
    split_kind: str | None, untar_it: bool, recursive: bool, per: int, size: int, header: int = 0
) -> None:
    if split_kind is not None and untar_it:
        raise InvalidArgument("--split and --untar exclude each other")
    if (split_kind is not None or untar_it) and recursive:
        raise InvalidArgument("--split and --untar take one file, not a tree (-r)")
    if split_kind is None and (per or size or header):
        raise InvalidArgument(
            "--target-file-datums, --target-file-bytes and --header-records need --split"
        )
